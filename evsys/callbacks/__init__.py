"""Callbacks: the researcher's own code, called as training goes, on every backend.

A callback is a registered class with any of the hooks of :class:`Callback` (a hook it does not
define is skipped), configured on the run as ``callbacks: [{kind, params, on_error}]``. Each
backend calls them from the one place where its steps end: ``RunContext.validate`` (the loops of
the mock and tinker backends) and the TRL callback of the local backend. Steps are the run's
steps: they continue across phases (``combo``, ``sdft`` rounds, continual stages) as the curves do,
and a stop ends the phase that trains when it is asked for (the next phase starts as planned).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from evsys.errors import CallbackError, ConfigError, Problem

if TYPE_CHECKING:
    from evsys.config import CallbackSpec
    from evsys.protocols import LogStore

log = logging.getLogger(__name__)

OnError = Literal["fail", "warn"]
HOOKS = ("on_train_begin", "on_step_end", "on_evaluate", "on_save", "on_train_end")


@dataclass(frozen=True)
class Stop:
    """Returned by ``on_step_end`` or ``on_evaluate``: end training after this step (in a
    chained run, the phase training now). The loop saves its final checkpoint, the run
    completes and records ``stopped_by``. Tinker SFT pipelines its steps: one already sent
    when the stop is asked for still trains, unless validation was due at this step."""

    reason: str


class Callback(Protocol):
    """Watches training; every hook is optional.

    Implementors define the hooks they need; a nested ``Config`` validates ``params``, and
    ``on_error`` says what a hook that raises does to the run (``fail``, the default, or
    ``warn``; ``callbacks[i].on_error`` overrides it)::

        @register_callback("loss_ceiling")
        class LossCeiling:
            \"\"\"Stops a run whose training loss climbs past a ceiling.\"\"\"

            on_error = "warn"  # a bug here must not cost the run

            class Config(Strict):
                ceiling: float = Field(10.0, gt=0, description="Stop above this train/loss.")

            def __init__(self, **params):
                self.cfg = self.Config(**params)
                self.seen: list[float] = []

            def on_step_end(self, step: int, metrics: dict[str, float]) -> Stop | None:
                loss = metrics.get("train/loss")
                if loss is None:  # a step that logs nothing
                    return None
                self.seen.append(loss)
                if loss > self.cfg.ceiling:
                    return Stop(f"train/loss {loss:.3g} > {self.cfg.ceiling} at step {step}")
                return None

            def on_train_end(self) -> None:
                print(f"{len(self.seen)} losses seen")
    """

    on_error: ClassVar[OnError]

    def on_train_begin(self) -> None:
        """Before the first step (once per run, also when it trains in phases)."""

    def on_step_end(self, step: int, metrics: dict[str, float]) -> Stop | None:
        """After optimizer step ``step``: ``metrics`` are those logged at that step (``train/…``,
        and ``val/…`` when it validated); empty on a step that logs nothing (``log_every``)."""

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> Stop | None:
        """After the ``val`` benchmarks due at ``step`` were scored: ``val/<bench>/<metric>``."""

    def on_save(self, step: int, path: str) -> None:
        """A checkpoint of the weights after ``step`` was saved at ``path`` (a directory, or a
        ``tinker://`` path)."""

    def on_train_end(self) -> None:
        """After training returned (not when it failed)."""


@dataclass
class _Entry:
    index: int
    kind: str
    on_error: OnError
    callback: Any

    @property
    def label(self) -> str:
        return f"callback '{self.kind}' (callbacks[{self.index}])"


_STEP_IN_NAME = re.compile(r"step_(\d+)$")


class Callbacks:
    """The run's callbacks, called in order; what they asked for (a stop) and what failed."""

    def __init__(self, entries: Sequence[_Entry] = ()):
        self.entries = list(entries)
        self.stopped_by: str | None = None
        """``<kind>: <reason>`` of the last stop asked for."""
        self._stopping = False
        self.errors: dict[str, str] = {}
        """Failures of ``warn`` callbacks: ``callback_<i>_<kind>_error`` → the last error."""
        self._offset = 0  # steps of the phases before the one training now
        self._last_step = 0
        self._logged: tuple[int, dict[str, float]] = (0, {})  # the metrics of the latest step
        self._saved: set[str] = set()

    @classmethod
    def build(cls, specs: Sequence[CallbackSpec]) -> Callbacks:
        from evsys.registry import CALLBACKS

        entries = []
        for index, spec in enumerate(specs):
            callback = CALLBACKS.build(spec.kind, spec.params)
            on_error = spec.on_error or getattr(callback, "on_error", "fail")
            if on_error not in ("fail", "warn"):
                raise ConfigError(
                    Problem(
                        path=f"callbacks[{index}]",
                        message=f"callback '{spec.kind}' declares on_error={on_error!r}",
                        expected="fail or warn",
                    )
                )
            entries.append(_Entry(index, spec.kind, on_error, callback))
        return cls(entries)

    @property
    def should_stop(self) -> bool:
        return self._stopping

    # -- the hooks, as backends call them -----------------------------------------------------

    def train_begin(self) -> None:
        self._fire("on_train_begin")

    def evaluate(self, step: int, scores: dict[str, float]) -> None:
        """``step`` counts within the phase training now, as its loop does."""
        if scores:
            self._fire("on_evaluate", step + self._offset, dict(scores))

    def step_end(self, step: int) -> None:
        step += self._offset
        self._last_step = step
        logged_at, metrics = self._logged
        self._fire("on_step_end", step, dict(metrics) if logged_at == step else {})

    def train_end(self) -> None:
        self._fire("on_train_end")

    @contextmanager
    def steps_after(self, offset: int) -> Iterator[None]:
        """One phase: its step ``n`` is the run's step ``offset + n`` (phases nest), and a stop
        asked for in it ends it alone."""
        self._offset += offset
        try:
            yield
        finally:
            self._offset -= offset
            self._stopping = False

    def watch(self, log_store: LogStore) -> LogStore:
        """``log_store``, telling these callbacks what each step logs and every checkpoint."""
        return _Watched(log_store, self) if self.entries else log_store

    def record(self) -> dict[str, Any]:
        """What the run's result keeps: why it stopped, what failed."""
        stopped = {"stopped_by": self.stopped_by} if self.stopped_by else {}
        return stopped | self.errors

    # -- inside ---------------------------------------------------------------------------------

    def _logged_metrics(self, metrics: dict[str, float], step: int) -> None:
        logged_at, so_far = self._logged
        self._logged = (step, (so_far if logged_at == step else {}) | metrics)

    def _logged_artifact(self, name: str, path: str) -> None:
        if (
            not (name == "final_checkpoint" or name.startswith("checkpoint_"))
            or path in self._saved
        ):
            return  # a chained run logs its last phase's final checkpoint again
        self._saved.add(path)
        numbered = _STEP_IN_NAME.search(name)
        step = int(numbered.group(1)) + self._offset if numbered else self._last_step
        self._fire("on_save", step, path)

    def _fire(self, hook: str, *args: Any) -> None:
        for entry in self.entries:
            method = getattr(entry.callback, hook, None)
            if method is None:
                continue
            try:
                answer = method(*args)
            except Exception as exc:
                self._failed(entry, hook, args, exc)
                continue
            if isinstance(answer, Stop) and not self._stopping:
                self._stopping = True
                self.stopped_by = f"{entry.kind}: {answer.reason}"
                log.info("%s stops training: %s", entry.label, answer.reason)

    def _failed(self, entry: _Entry, hook: str, args: tuple[Any, ...], exc: Exception) -> None:
        where = f" at step {args[0]}" if hook not in ("on_train_begin", "on_train_end") else ""
        message = f"{entry.label} failed in {hook}{where}: {type(exc).__name__}: {exc}"
        if entry.on_error == "fail":
            raise CallbackError(message) from exc
        log.warning("%s; it declares on_error=warn, so training goes on", message)
        self.errors[f"callback_{entry.index}_{entry.kind}_error"] = message


class _Watched:
    """A log store that also tells the callbacks what was logged."""

    def __init__(self, inner: LogStore, callbacks: Callbacks):
        self.inner, self.callbacks = inner, callbacks

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.inner.log_scalar(name, value, step)
        self.callbacks._logged_metrics({name: value}, step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)
        self.callbacks._logged_metrics(metrics, step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.inner.log_hyperparams(params)

    def log_artifact(self, name: str, path: str) -> None:
        self.inner.log_artifact(name, path)
        self.callbacks._logged_artifact(name, path)

    def close(self) -> None:
        self.inner.close()
