"""``DashboardClient``: the reference's write methods over a local mirror and a background sender.

Every write is built here (a fresh uuid4 id, the time), appended to the mirror, then queued for
the sender thread; the write methods never touch the network. Reads are synchronous and raise.

    client = DashboardClient()                   # EVSYS_* env vars; checks the key unless offline
    exp = client.create_experiment("lora-rank", hypothesis="rank 8 is enough")
    run = client.create_run(exp, "r8", config={"rank": 8})
    client.log_step_metric(run, 1, {"loss": 0.9})
    client.close()                               # sends what is left; raises a refused write
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from evsys.tracking import exit_flush
from evsys.tracking.errors import (
    DashboardClientError,
    EvsysAuthError,
    ServiceUnreachable,
)
from evsys.tracking.mirror import Mirror, encode_write
from evsys.tracking.reads import ServiceReads
from evsys.tracking.sender import Sender
from evsys.tracking.settings import Settings
from evsys.tracking.step_lines import StepLines
from evsys.tracking.transport import Transport
from evsys.tracking.wire import OPS, check_data, make_write, new_id

__all__ = ["DashboardClient", "DashboardClientError", "EvsysAuthError"]

log = logging.getLogger("evsys.tracking")
KEY_CHECK_TIMEOUT_S = 3.0  # a service that hangs costs a run's start this, then it goes on


class DashboardClient(ServiceReads):
    """Writes go to ``<log_dir>/<segment>.writes.jsonl`` and then, unless ``offline``, to the
    service at ``api_url`` in the background. Arguments override the ``EVSYS_*`` env vars.

    Raises ``EvsysAuthError`` at start when not offline and the key is missing or rejected; an
    unreachable service only warns (writes are mirrored and retried)."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        project_id: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        *,
        timeout: float = 10.0,
        send_interval: float = 0.25,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ):
        self.settings = Settings.resolve(
            api_url=api_url,
            api_key=api_key,
            project_id=project_id,
            log_dir=log_dir,
            offline=offline,
        )
        self.project: dict[str, Any] | None = None
        self._transport: Transport | None = None
        self._sender: Sender | None = None
        if not self.settings.offline:
            if not self.settings.api_key:
                raise EvsysAuthError(
                    "no API key: set EVSYS_API_KEY (made by `evsys dashboard create-key "
                    "--project P`) or pass api_key=, or set EVSYS_OFFLINE=1 to only mirror locally"
                )
            self._transport = Transport(self.settings.api_url, self.settings.api_key, timeout)
            self.project = self._check_key()
        # The mirror exists only once the key is known good: a refused start leaves no file.
        self.mirror = Mirror(self.settings.log_dir)
        if self._transport is not None:
            self._sender = Sender(
                self._transport,
                self.mirror,
                interval=send_interval,
                retry_initial=retry_initial,
                retry_max=retry_max,
                service_down=self.project is None,
            )
            exit_flush.flushed_at_exit(self)
        self._created: set[str] = set()  # ids of the objects this client's creates made
        self._step_lines = StepLines()
        self._closed = False

    @property
    def offline(self) -> bool:
        return self.settings.offline

    def _check_key(self) -> dict[str, Any] | None:
        """``GET /sdk/whoami``: a rejected key raises; no answer warns and goes on."""
        try:
            timeout = min(self._transport.timeout, KEY_CHECK_TIMEOUT_S)
            return self._transport.whoami(self.settings.project_id, timeout)
        except ServiceUnreachable as exc:
            log.warning(
                "dashboard: %s; writes go to the local mirror %s and are sent when it answers",
                exc.detail,
                self.settings.log_dir,
            )
            return None

    # ---- writes: mirrored, then queued; never a network call ----
    def _write(self, op: str, data: dict[str, Any], *, keep_none: bool = False) -> None:
        """Check, mirror, queue. Optional fields left ``None`` are left out of a creation; an
        update sends what it was given (``None`` clears a field). The update of an object this
        client created says ``create_queued``: the service takes it even before the create."""
        if self._closed:
            raise DashboardClientError(f"{op} after close(): the client is closed")
        if not keep_none:
            data = {key: value for key, value in data.items() if value is not None}
        problem = check_data(op, data)
        if problem is not None:
            raise DashboardClientError(f"{op}: {problem}")
        write = make_write(op, data)
        if op.endswith(".create"):
            self._created.add(data["id"])
        elif keep_none and data["id"] in self._created:
            write["create_queued"] = True
        self._record(write["id"], encode_write(write))

    def _record(self, write_id: str, line: str) -> None:
        self.mirror.append(line)
        if self._sender is not None:
            self._sender.submit(write_id, line)

    def create_experiment(
        self,
        name: str,
        hypothesis: str | None = None,
        success_metric: str | None = None,
        direction: str = "maximize",
        tags: Iterable[str] = (),
        project_goal_id: str | None = None,
        parent_experiment_id: str | None = None,
        sweep_plan: dict[str, Any] | None = None,
        id: str | None = None,
        status: str | None = None,
    ) -> str:
        experiment_id = id or new_id()
        self._write(
            "experiment.create",
            {
                "id": experiment_id,
                "name": name,
                "hypothesis": hypothesis,
                "success_metric": success_metric,
                "direction": direction,
                "tags": list(tags) or None,
                "project_goal_id": project_goal_id,
                "parent_experiment_id": parent_experiment_id,
                "sweep_plan": sweep_plan,
                "status": status,
            },
        )
        return experiment_id

    def update_experiment(self, experiment_id: str, **fields: Any) -> None:
        self._update("experiment.update", experiment_id, fields)

    def create_generation(
        self,
        experiment_id: str,
        index: int,
        parent_run_ids: Iterable[str] = (),
        proposer: str | None = None,
        id: str | None = None,
        status: str | None = None,
    ) -> str:
        generation_id = id or new_id()
        self._write(
            "generation.create",
            {
                "id": generation_id,
                "experiment_id": experiment_id,
                "index": index,
                "parent_run_ids": list(parent_run_ids) or None,
                "proposer": proposer,
                "status": status,
            },
        )
        return generation_id

    def update_generation(self, generation_id: str, **fields: Any) -> None:
        self._update("generation.update", generation_id, fields)

    def create_run(
        self,
        experiment_id: str,
        name: str,
        *,
        status: str | None = None,
        config: dict[str, Any] | None = None,
        config_hash: str | None = None,
        overrides: Iterable[str] = (),
        group_id: str | None = None,
        seed: int | None = None,
        git: dict[str, Any] | None = None,
        generation_id: str | None = None,
        parent_run_ids: Iterable[str] = (),
        data_lineage: Iterable[dict[str, Any]] = (),
        id: str | None = None,
    ) -> str:
        run_id = id or new_id()
        self._write(
            "run.create",
            {
                "id": run_id,
                "experiment_id": experiment_id,
                "name": name,
                "status": status,
                "config": config,
                "config_hash": config_hash,
                "overrides": list(overrides) or None,
                "group_id": group_id,
                "seed": seed,
                "git": git,
                "generation_id": generation_id,
                "parent_run_ids": list(parent_run_ids) or None,
                "data_lineage": list(data_lineage) or None,
            },
        )
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        self._update("run.update", run_id, fields)

    def log_step_metric(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        """The hot path: one mirrored line and a queue put; the sender batches it. Plain finite
        numbers are encoded by ``StepLines`` (the same JSON at a fraction of the cost); anything
        else goes through ``_write``, which checks it (or raises the reason)."""
        made = None if self._closed else self._step_lines.make(run_id, step, metrics)
        if made is None:
            self._write(
                "run.steps", {"run_id": run_id, "steps": [{"step": step, "metrics": dict(metrics)}]}
            )
            return
        self.mirror.append(made[1])
        if self._sender is not None:
            self._sender.submit(*made)

    def log_eval_run(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        *,
        name: str | None = None,
        step: int | None = None,
        benchmark_id: str | None = None,
        id: str | None = None,
    ) -> str:
        eval_run_id = id or new_id()
        self._write(
            "eval_run.create",
            {
                "id": eval_run_id,
                "run_id": run_id,
                "metrics": dict(metrics),
                "name": name,
                "step": step,
                "benchmark_id": benchmark_id,
            },
        )
        return eval_run_id

    def log_predictions(
        self, run_id: str, rows: Iterable[Mapping[str, Any]], *, eval_run_id: str | None = None
    ) -> None:
        rows = [dict(row) for row in rows]
        self._write(
            "predictions.add",
            {"id": new_id(), "run_id": run_id, "eval_run_id": eval_run_id, "rows": rows},
        )

    def record_benchmark(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        *,
        benchmark_id: str | None = None,
        benchmark_name: str | None = None,
    ) -> None:
        self._write(
            "benchmark.record",
            {
                "id": new_id(),
                "run_id": run_id,
                "benchmark_id": benchmark_id,
                "benchmark_name": benchmark_name,
                "metrics": dict(metrics),
            },
        )

    def _update(self, op: str, object_id: str, fields: dict[str, Any]) -> None:
        allowed = sorted(OPS[op]["optional"])
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise DashboardClientError(f"{op}: unknown field(s) {unknown}; fields: {allowed}")
        self._write(op, {"id": object_id, **fields}, keep_none=True)

    # ---- delivery ----
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every write so far was sent (or given up); ``True`` when all were
        acknowledged. Raises ``DashboardClientError`` for a write the service refused."""
        self.mirror.sync_to_disk()
        if self._sender is None:
            return True
        all_sent = self._sender.flush(timeout)
        self._raise_refused()
        return all_sent

    def close(self, timeout: float = 30.0) -> bool:
        """Send what is left (up to ``timeout`` seconds), close the mirror, raise a refused write.
        Writes not sent stay in the mirror: ``evsys sync <log_dir>`` sends them later."""
        if self._closed:
            return True
        self._closed = True
        exit_flush.closed(self)
        all_sent = True if self._sender is None else self._sender.close(timeout)
        self.mirror.close()
        if not all_sent:
            log.warning(
                "dashboard: some writes were not sent; they are in %s: run `evsys sync %s`",
                self.mirror.writes_path,
                self.settings.log_dir,
            )
        self._raise_refused()
        return all_sent

    def _raise_refused(self) -> None:
        refused = [] if self._sender is None else self._sender.take_refused()
        if refused:
            first = refused[0]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise DashboardClientError(f"the service refused {first.detail}{more}", first.status)

    def __enter__(self) -> DashboardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
