"""The dashboard under a sweep's load, and the client's cost in the training loop.

    python bench/dashboard.py [--arms 32] [--steps 2000] [--db URL] [--calls 20000] [--rounds 7]

1. **Load**: ``--arms`` concurrent arm processes, each a run of one experiment logging
   ``--steps`` step metrics through its own DashboardClient (its own mirror), against the
   service under uvicorn in a process of its own, on PostgreSQL (``--db``, else
   ``EVSYS_TEST_POSTGRES_URL``, else ``bash scripts/postgres url`` when that server is up; with
   none, SQLite, and a note says so). Reported: rows stored against rows logged (nothing may be
   lost), the latency of the service's write batches (``POST /sdk/writes``, p50/p99, timed in the
   arms), and rows per second from the first metric logged to the last one stored.
2. **Cost per call**: ``log_metrics`` of the ``dashboard`` log store (the client's mirror and
   queue, its sender thread live against the same service) against the ``jsonl`` log store,
   ``--calls`` calls a round, the sides alternating round after round; each figure is the median
   of its rounds, so a machine that gets busier moves both alike. Target: ≤ 1.5× jsonl.

Each PostgreSQL run uses a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the service process the fault tests use serves the bench too
from tests.dashboard_process import ServiceProcess, new_key, postgres_schema  # noqa: E402

TARGET_RATIO = 1.5


# -- the database and the service ----------------------------------------------------------------


def postgres_url(given: str | None) -> str | None:
    if given or os.environ.get("EVSYS_TEST_POSTGRES_URL"):
        return given or os.environ["EVSYS_TEST_POSTGRES_URL"]
    script = REPO / "scripts" / "postgres"
    up = subprocess.run(["bash", str(script), "status"], capture_output=True)
    if up.returncode != 0:
        return None
    return subprocess.run(
        ["bash", str(script), "url"], capture_output=True, text=True, check=True
    ).stdout.strip()


@contextlib.contextmanager
def database(url: str | None, directory: Path) -> Iterator[str]:
    """A fresh schema of the PostgreSQL database at ``url`` (dropped afterwards), else SQLite."""
    if url is None:
        print("note: no PostgreSQL server (bash scripts/postgres start): measuring on SQLite")
        yield f"sqlite:///{directory / 'dashboard.db'}"
        return
    with postgres_schema(url, "bench") as schema_url:
        yield schema_url


# -- 1. load: concurrent arms ----------------------------------------------------------------------


def arm(url: str, key: str, experiment_id: str, index: int, steps: int, start_at: float) -> None:
    """One arm process: a run, ``steps`` step metrics, flushed; prints its timings as JSON."""
    from evsys.tracking.client import DashboardClient
    from evsys.tracking.transport import Transport

    batch_latencies: list[float] = []
    post_lines = Transport.post_lines

    def timed(self, path, lines):  # the service's answer time for each batch of writes
        began = time.perf_counter()
        try:
            return post_lines(self, path, lines)
        finally:
            batch_latencies.append(time.perf_counter() - began)

    Transport.post_lines = timed
    with tempfile.TemporaryDirectory() as mirror:
        client = DashboardClient(url, key, log_dir=mirror)
        run_id = client.create_run(experiment_id, f"arm{index}", seed=index)
        time.sleep(max(0.0, start_at - time.time()))  # every arm starts together
        first = time.time()
        for step in range(steps):
            client.log_step_metric(run_id, step, {"train/loss": 1.0 / (step + 1)})
        all_sent = client.close(timeout=600)
        last = time.time()
    print(
        json.dumps(
            {
                "run_id": run_id,
                "first": first,
                "last": last,
                "all_sent": all_sent,
                "batches": batch_latencies,
            }
        )
    )


def load(url: str, key: str, n_arms: int, steps: int, directory: Path) -> None:
    from evsys.tracking.client import DashboardClient

    reader = DashboardClient(url, key, log_dir=directory / "reader")
    experiment_id = reader.create_experiment("bench-load", tags=["bench"])
    reader.flush(timeout=30)
    start_at = time.time() + 3.0 + 0.15 * n_arms  # time for every process to start
    arms = [
        subprocess.Popen(
            [sys.executable, __file__, "--arm", url, key, experiment_id, str(i), str(steps)]
            + [str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for i in range(n_arms)
    ]
    reports = []
    for process in arms:
        out, _ = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(f"an arm failed (exit {process.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    stored = sum(stored_steps(reader, r["run_id"]) for r in reports)
    reader.close()
    logged = n_arms * steps
    batches = sorted(b for r in reports for b in r["batches"])
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    print(f"load: {n_arms} arms × {steps} step metrics = {logged} rows logged")
    lost = logged - stored
    print(f"  rows stored: {stored}  ({'nothing lost' if lost == 0 else f'LOST {lost}'})")
    print(f"  every arm's writes acknowledged: {all(r['all_sent'] for r in reports)}")
    print(
        f"  write batches: {len(batches)}, latency p50 {percentile(batches, 50) * 1000:.1f} ms, "
        f"p99 {percentile(batches, 99) * 1000:.1f} ms"
    )
    print(f"  throughput: {stored / span:,.0f} rows/s ({span:.1f} s first log → last stored)")


def stored_steps(reader: Any, run_id: str) -> int:
    """The steps the service holds for an arm's run; 0 when it never got the run (counted as
    lost below, not a traceback)."""
    from evsys.tracking.errors import DashboardClientError

    try:
        return len(reader.get_run_steps(run_id))
    except DashboardClientError as exc:
        print(f"  run {run_id}: not stored ({exc})")
        return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


# -- 2. cost per log_metrics call --------------------------------------------------------------------


def cost_per_call(url: str, key: str, calls: int, rounds: int, directory: Path) -> None:
    from evsys.log_stores.dashboard import DashboardLogStore
    from evsys.log_stores.jsonl import JsonlLogStore

    os.environ["EVSYS_API_URL"], os.environ["EVSYS_API_KEY"] = url, key
    sides = {
        "jsonl": lambda run_dir: JsonlLogStore(run_dir=run_dir),
        # Closing (untimed) waits until the round's writes are sent: no round pays for another.
        "dashboard": lambda run_dir: DashboardLogStore(run_dir=run_dir, close_timeout_s=600),
    }
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for number in range(rounds):
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for name in order:
            run_dir = directory / f"{name}-{number}"
            store = sides[name](run_dir)
            metrics = {"train/loss": 0.5, "train/lr": 1e-4, "train/grad_norm": 1.25}
            began = time.perf_counter()
            for step in range(calls):
                store.log_metrics(metrics, step)
            samples[name].append((time.perf_counter() - began) / calls)
            store.close()  # untimed: the sender's catch-up is not the training loop's cost
    jsonl, dashboard = (statistics.median(samples[name]) for name in sides)
    ratio = dashboard / jsonl
    print(f"cost per log_metrics call (median of {rounds} rounds × {calls} calls):")
    print(f"  jsonl {jsonl * 1e6:.1f} µs   dashboard {dashboard * 1e6:.1f} µs")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(f"  ratio {ratio:.2f}×   target ≤ {TARGET_RATIO}×  {verdict}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--arm":
        url, key, experiment_id, index, steps, start_at = sys.argv[2:8]
        arm(url, key, experiment_id, int(index), int(steps), float(start_at))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--db", help="a PostgreSQL URL (default: the test server, if up)")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-load", action="store_true", help="only the cost per call")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="evsys-bench-dashboard-"))
    url = postgres_url(args.db)
    (directory / "store").mkdir()
    with database(url, directory) as db_url:
        key = new_key(db_url, "bench")
        with ServiceProcess(db_url, directory / "store") as service:
            print(f"service on {'PostgreSQL' if url else 'SQLite'}")
            if not args.skip_load:
                load(service.url, key, args.arms, args.steps, directory)
            cost_per_call(service.url, key, args.calls, args.rounds, directory)


if __name__ == "__main__":
    main()
