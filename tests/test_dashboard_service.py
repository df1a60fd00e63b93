"""The dashboard service's API over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL:
keys, project isolation, idempotent writes, step upserts, bad input, body limits, reads.
(Uploads: test_dashboard_files.py; the command and the schema: test_dashboard_command.py.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
import httpx  # noqa: E402 - after the extra's check
from dashboard_server import (  # noqa: E402
    SMALL_MAX_BODY,
    SMALL_MAX_UPLOAD,
    DashboardService,
    ProjectClient,
    write,
)

import evsys  # noqa: E402

MAX_BODY, MAX_UPLOAD = SMALL_MAX_BODY, SMALL_MAX_UPLOAD


@pytest.fixture
def service(small_limits_dashboard: DashboardService) -> DashboardService:
    return small_limits_dashboard


@pytest.fixture
def api(service: DashboardService) -> Iterator[ProjectClient]:
    client = ProjectClient(service, service.new_project())
    yield client
    client.http.close()


@pytest.fixture
def other_api(service: DashboardService) -> Iterator[ProjectClient]:
    client = ProjectClient(service, service.new_project())
    yield client
    client.http.close()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def sweep_writes(experiment: str = "exp-1", run: str = "run-1") -> list[dict[str, Any]]:
    """One of every op: an experiment with a generation, a run and what hangs off it."""
    return [
        write(
            "experiment.create",
            {
                "id": experiment,
                "name": "lr sweep",
                "hypothesis": "a lower lr <script>alert(1)</script> wins",
                "success_metric": "eval/accuracy",
                "direction": "maximize",
                "tags": ["sft", "lr"],
                "sweep_plan": {"axes": {"lr": [1e-4, 1e-5]}},
                "status": "running",
            },
        ),
        write("generation.create", {"id": "gen-0", "experiment_id": experiment, "index": 0}),
        write(
            "run.create",
            {
                "id": run,
                "experiment_id": experiment,
                "name": "lr=1e-4",
                "status": "running",
                "config": {"lr": 1e-4, "model": {"name": "tiny"}},
                "config_hash": "abc123",
                "overrides": ["lr=1e-4"],
                "seed": 7,
                "generation_id": "gen-0",
                "data_lineage": [{"path": "train.jsonl", "sha256": "f" * 64}],
            },
        ),
        write(
            "run.steps",
            {
                "run_id": run,
                "steps": [{"step": s, "metrics": {"loss": 1.0 / s, "lr": 1e-4}} for s in (1, 2, 3)],
            },
        ),
        write("eval_run.create", {"id": "eval-1", "run_id": run, "metrics": {"accuracy": 0.8}}),
        write(
            "predictions.add",
            {
                "id": "pred-1",
                "run_id": run,
                "eval_run_id": "eval-1",
                "rows": [
                    {"prompt": "2+2?", "completion": "4", "expected": "4", "passed": True},
                    {"prompt": "3+3?", "completion": "7", "expected": "6", "passed": False},
                ],
            },
        ),
        write("benchmark.record", {"id": "bench-1", "run_id": run, "metrics": {"pass@1": 0.5}}),
        write("run.update", {"id": run, "status": "completed", "summary": {"accuracy": 0.8}}),
        write(
            "experiment.update",
            {"id": experiment, "status": "completed", "best_run_id": run, "best_score": 0.8},
        ),
    ]


def everything(api: ProjectClient, experiment: str = "exp-1", run: str = "run-1") -> dict[str, Any]:
    """What the service holds of the experiment and its run."""
    return {
        "experiment": api.get(f"/experiments/{experiment}"),
        "run": api.get(f"/runs/{run}"),
        "steps": api.get(f"/runs/{run}/steps")["steps"],
        "evals": api.get(f"/runs/{run}/evals")["evals"],
        "predictions": api.get(f"/runs/{run}/predictions")["predictions"],
        "benchmarks": api.get(f"/runs/{run}/benchmarks")["benchmarks"],
    }


# --- health, keys, isolation ---------------------------------------------------------------------


def test_health_needs_no_key(dashboard: DashboardService) -> None:
    response = httpx.get(f"{dashboard.api}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": evsys.__version__}


def test_the_openapi_schema_describes_the_api(service: DashboardService) -> None:
    schema = httpx.get(f"{service.api}/openapi.json").json()
    paths = schema["paths"]
    for path in ("/sdk/writes", "/sdk/whoami", "/experiments/{experiment_id}", "/datasets"):
        assert f"/api/dashboard/api{path}" in paths
    body = paths["/api/dashboard/api/sdk/writes"]["post"]["requestBody"]
    ops = body["content"]["application/json"]["schema"]["properties"]["writes"]["items"]
    assert "run.steps" in ops["properties"]["op"]["enum"]
    assert any(
        s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values()
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer evsys_not-a-key"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no key", "unknown key", "not bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sdk/whoami"),
        ("POST", "/sdk/writes"),
        ("GET", "/experiments"),
        ("GET", "/runs/run-1"),
        ("GET", "/datasets"),
        ("POST", "/benchmarks"),
    ],
)
def test_every_endpoint_but_health_needs_a_key(
    service: DashboardService, headers: dict[str, str], method: str, path: str
) -> None:
    response = httpx.request(
        method, service.api + path, headers=headers, json={"writes": []}, timeout=30
    )
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_revoked_key_is_refused(service: DashboardService, api: ProjectClient) -> None:
    assert api.get("/sdk/whoami")["project_id"] == api.project.id
    service.revoke(api.project.key)
    assert api.http.get("/sdk/whoami").status_code == 401
    assert api.post_writes(*sweep_writes()).status_code == 401


def test_whoami_names_the_project_and_refuses_another(api: ProjectClient) -> None:
    assert api.get("/sdk/whoami") == {
        "project_id": api.project.id,
        "project_name": api.project.name,
    }
    assert api.get("/sdk/whoami", project_id=api.project.name)["project_id"] == api.project.id
    assert api.http.get("/sdk/whoami", params={"project_id": "someone-else"}).status_code == 403


def test_a_key_reaches_only_its_own_project(api: ProjectClient, other_api: ProjectClient) -> None:
    api.send(*sweep_writes())
    dataset = api.upload("datasets", "secret", "rows.jsonl", b'{"q": 1}\n').json()
    before = everything(api)

    # Reads: nothing of project A is visible, and a miss looks like a missing object.
    assert other_api.get("/experiments") == {"experiments": []}
    assert other_api.get("/runs") == {"runs": []}
    assert other_api.get("/datasets") == {"datasets": []}
    for path in (
        "/experiments/exp-1",
        "/runs/run-1",
        "/runs/run-1/steps",
        "/runs/run-1/predictions",
        "/datasets/secret",
        f"/datasets/{dataset['id']}",
        f"/datasets/{dataset['id']}/content",
    ):
        response = other_api.http.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]

    # Writes: B's writes with A's ids and A's write ids land in B's own namespace.
    replayed = [write(w["op"], w["data"], w["id"]) for w in sweep_writes()]
    hostile = sweep_writes()  # written after the replay: its step value is the newer one
    hostile[0]["data"]["hypothesis"] = "overwritten"
    hostile[3]["data"]["steps"] = [{"step": 1, "metrics": {"loss": 999.0}}]
    assert other_api.send(*replayed)["duplicates"] == 0
    assert other_api.send(*hostile) == {"applied": len(hostile), "duplicates": 0}
    assert everything(api) == before
    assert other_api.get("/runs/run-1/steps")["steps"][0]["value"] == 999.0


# --- writes ----------------------------------------------------------------------------------------


def test_a_replayed_batch_is_all_duplicates_and_changes_nothing(api: ProjectClient) -> None:
    writes = sweep_writes()
    assert api.send(*writes) == {"applied": len(writes), "duplicates": 0}
    first = everything(api)
    assert api.send(*writes) == {"applied": 0, "duplicates": len(writes)}
    assert api.send(*reversed(writes)) == {"applied": 0, "duplicates": len(writes)}
    assert everything(api) == first
    assert len(first["predictions"]) == 2 and len(first["steps"]) == 6


def test_the_same_write_twice_in_one_batch_applies_once(api: ProjectClient) -> None:
    steps = write("run.steps", {"run_id": "r", "steps": [{"step": 1, "metrics": {"x": 1.0}}]})
    rows = write(
        "predictions.add", {"id": "p", "run_id": "r", "rows": [{"prompt": "a", "completion": "b"}]}
    )
    api.send(write("run.create", {"id": "r", "experiment_id": "e", "name": "r"}))
    assert api.send(steps, rows, steps, rows) == {"applied": 2, "duplicates": 2}
    assert len(api.get("/runs/r/predictions")["predictions"]) == 1
    # The same predictions op re-sent under a new write id is still stored once.
    assert api.send(write("predictions.add", rows["data"]))["applied"] == 1
    assert len(api.get("/runs/r/predictions")["predictions"]) == 1


def test_a_step_metric_is_one_row_and_the_later_value_wins(api: ProjectClient) -> None:
    api.send(write("run.create", {"id": "r", "experiment_id": "e", "name": "arm"}))

    def steps(*entries: tuple[int, float]) -> dict[str, Any]:
        data = [{"step": s, "metrics": {"loss": v}} for s, v in entries]
        return write("run.steps", {"run_id": "r", "steps": data})

    api.send(steps((1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7)))
    # A resumed arm re-logs step 4 and goes on; another machine's segment repeats step 2.
    api.send(steps((4, 0.65), (5, 0.6)))
    api.send(steps((2, 0.85)), steps((2, 0.88)))
    api.send(steps((6, 0.5), (6, 0.55)))
    got = [(s["step"], s["value"]) for s in api.get("/runs/r/steps")["steps"]]
    assert got == [(1, 1.0), (2, 0.88), (3, 0.8), (4, 0.65), (5, 0.6), (6, 0.55)]


def test_concurrent_batches_lose_nothing(api: ProjectClient) -> None:
    api.send(write("run.create", {"id": "r", "experiment_id": "e", "name": "arm"}))
    errors: list[str] = []

    def arm(worker: int) -> None:
        with httpx.Client(
            base_url=str(api.http.base_url), headers=api.project.headers, timeout=60
        ) as http:
            for batch in range(4):
                entries = [
                    {"step": s, "metrics": {f"m{worker}": float(s), "shared": float(worker)}}
                    for s in range(batch * 20, batch * 20 + 25)
                ]
                response = http.post(
                    "/sdk/writes",
                    json={"writes": [write("run.steps", {"run_id": "r", "steps": entries})]},
                )
                if response.status_code != 200:
                    errors.append(response.text)

    threads = [threading.Thread(target=arm, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = api.get("/runs/r/steps")["steps"]
    steps = range(0, 85)
    assert sorted((r["step"], r["name"]) for r in rows) == sorted(
        [(s, f"m{w}") for w in range(6) for s in steps] + [(s, "shared") for s in steps]
    )


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"id": "w", "op": "run.explode", "data": {}}, "op: unknown op 'run.explode'"),
        ({"id": "", "op": "run.create", "data": {}}, "id: must be a non-empty string"),
        (
            {"id": "w", "op": "run.create", "data": {"id": "r", "name": "n"}},
            "data.experiment_id: required",
        ),
        (
            {
                "id": "w",
                "op": "run.create",
                "data": {"id": "r", "experiment_id": "e", "name": "n", "nmae": 1},
            },
            "data.nmae: not a field of run.create",
        ),
        (
            {
                "id": "w",
                "op": "run.steps",
                "data": {"run_id": "r", "steps": [{"step": "1", "metrics": {}}]},
            },
            "data.steps[0].step: must be an integer",
        ),
        (
            {
                "id": "w",
                "op": "run.steps",
                "data": {"run_id": "r", "steps": [{"step": 1, "metrics": {"loss": "low"}}]},
            },
            "data.steps[0].metrics.loss: must be a number",
        ),
        (
            {
                "id": "w",
                "op": "run.steps",
                "data": {"run_id": "r", "steps": [{"step": 2**64, "metrics": {}}]},
            },
            "must be an integer (64-bit)",
        ),
        (
            {
                "id": "w",
                "op": "experiment.create",
                "data": {"id": "e", "name": "n", "direction": "up"},
            },
            "data.direction: must be 'maximize' or 'minimize'",
        ),
        (
            {
                "id": "w",
                "op": "predictions.add",
                "data": {"id": "p", "run_id": "r", "rows": [{"prompt": "q"}]},
            },
            "data.rows[0].completion: required",
        ),
        (
            {"id": "w", "op": "run.update", "data": {"id": "r"}, "extra": 1},
            "extra: unknown field of a write",
        ),
        ("not an object", "write: must be an object"),
        (
            {"id": "w", "op": "run.update", "data": {"id": "r", "status": "s" * 300}},
            "data.status: must be a string of at most 256",
        ),
        (
            {
                "id": "w",
                "op": "run.create",
                "data": {"id": "r", "experiment_id": "e", "name": "n", "config": nested(100)},
            },
            "data: nested deeper than 64 levels",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_malformed_write_rejects_its_batch_naming_index_and_field(
    api: ProjectClient, bad: Any, named: str
) -> None:
    good = write("experiment.create", {"id": "e-ok", "name": "fine"})
    response = api.post_writes(good, bad)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("writes[1].") and named in detail
    assert api.get("/experiments") == {"experiments": []}
    assert api.send(good) == {"applied": 1, "duplicates": 0}  # its id was not taken


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "body: not JSON"),
        (b'{"writes": {}}', "writes: must be a list"),
        (b'{"writes": [], "more": 1}', 'the body must be {"writes": [...]}'),
        (b"[1, 2]", 'the body must be {"writes": [...]}'),
        (b'{"writes": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "body: JSON nested too deeply"),
        (
            b'{"writes": [{"id": "w", "op": "run.update", "create_queued": true,'
            b' "data": {"id": "r", "summary": {"acc": NaN}}}] }',
            None,
        ),
    ],
)
def test_a_malformed_body_is_a_clear_4xx(
    api: ProjectClient, body: bytes, named: str | None
) -> None:
    response = api.http.post(
        "/sdk/writes", content=body, headers={"Content-Type": "application/json"}
    )
    if named is None:  # NaN is JSON to Python's parser (older mirrors have it): accepted
        assert response.status_code == 200
        assert api.get("/runs/r")["summary"] == {"acc": "NaN"}
        return
    assert response.status_code == 422
    assert named in response.json()["detail"]


def test_more_than_a_thousand_writes_are_refused(api: ProjectClient) -> None:
    writes = [write("run.steps", {"run_id": "r", "steps": []}) for _ in range(1001)]
    response = api.post_writes(*writes)
    assert response.status_code == 422
    assert "at most 1000" in response.json()["detail"]


def test_values_the_databases_cannot_hold_are_stored_cleanly(api: ProjectClient) -> None:
    api.send(
        write(
            "run.create",
            {
                "id": "r",
                "experiment_id": "e",
                "name": "nul\x00 and \ud800",
                "config": {"inf": float("inf"), "huge": 10**400},
            },
        ),
        write(
            "run.steps", {"run_id": "r", "steps": [{"step": 1, "metrics": {"loss": float("nan")}}]}
        ),
    )
    run = api.get("/runs/r")
    assert run["name"] == "nul\ufffd and ?"
    assert run["config"] == {"inf": "Infinity", "huge": None}
    assert api.get("/runs/r/steps")["steps"] == [{"step": 1, "name": "loss", "value": "NaN"}]


# --- limits ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(api: ProjectClient) -> None:
    rows = [{"prompt": "x" * (MAX_BODY + 1), "completion": ""}]
    big = write("predictions.add", {"id": "p", "run_id": "r", "rows": rows})
    response = api.post_writes(big)
    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["detail"]

    # Streamed without a Content-Length: counted as it arrives.
    payload = json.dumps({"writes": [big]}).encode()
    chunks = (payload[i : i + 65536] for i in range(0, len(payload), 65536))
    response = api.http.post("/sdk/writes", content=chunks)
    assert response.status_code == 413
    assert api.http.get("/runs/r/predictions").status_code == 404  # nothing was applied

    small = write(
        "predictions.add",
        {"id": "p", "run_id": "r", "rows": [{"prompt": "x" * 1000, "completion": ""}]},
    )
    assert api.send(small)["applied"] == 1


# --- reads ----------------------------------------------------------------------------------------


def test_reads_give_back_what_was_written(api: ProjectClient) -> None:
    api.send(*sweep_writes())
    api.send(
        write(
            "experiment.create",
            {"id": "exp-2", "name": "follow-up", "tags": ["lr"], "parent_experiment_id": "exp-1"},
        ),
        write(
            "run.create",
            {"id": "run-2", "experiment_id": "exp-1", "name": "lr=1e-5", "status": "failed"},
        ),
    )
    got = everything(api)
    experiment = got["experiment"]
    assert experiment["hypothesis"] == "a lower lr <script>alert(1)</script> wins"  # stored as text
    assert (experiment["status"], experiment["best_run_id"], experiment["best_score"]) == (
        "completed",
        "run-1",
        0.8,
    )
    assert experiment["tags"] == ["sft", "lr"] and experiment["sweep_plan"] == {
        "axes": {"lr": [1e-4, 1e-5]}
    }
    assert [r["id"] for r in experiment["runs"]] == ["run-1", "run-2"]
    assert [g["id"] for g in experiment["generations"]] == ["gen-0"]
    assert experiment["children"] == ["exp-2"]
    run = got["run"]
    assert run["config"] == {"lr": 1e-4, "model": {"name": "tiny"}} and run["seed"] == 7
    assert (run["status"], run["summary"]) == ("completed", {"accuracy": 0.8})
    assert run["data_lineage"] == [{"path": "train.jsonl", "sha256": "f" * 64}]
    assert [(s["step"], s["name"]) for s in got["steps"]][:2] == [(1, "loss"), (1, "lr")]
    assert [e["metrics"] for e in got["evals"]] == [{"accuracy": 0.8}]
    assert [(p["completion"], p["passed"]) for p in got["predictions"]] == [
        ("4", True),
        ("7", False),
    ]
    assert got["benchmarks"][0]["metrics"] == {"pass@1": 0.5}

    assert [e["id"] for e in api.get("/experiments", tag="sft")["experiments"]] == ["exp-1"]
    assert {e["id"] for e in api.get("/experiments", tag="lr")["experiments"]} == {"exp-1", "exp-2"}
    assert api.get("/experiments", status="completed")["experiments"][0]["id"] == "exp-1"
    assert len(api.get("/experiments", limit=1)["experiments"]) == 1
    assert [r["id"] for r in api.get("/runs", experiment_id="exp-1", status="failed")["runs"]] == [
        "run-2"
    ]
    assert api.get("/runs/run-1/steps", name="lr")["steps"][0] == {
        "step": 1,
        "name": "lr",
        "value": 1e-4,
    }
    bad = api.http.get("/experiments", params={"limit": "many"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("query.limit:")


def test_an_update_whose_create_is_queued_lands_before_its_create(api: ProjectClient) -> None:
    """Mirrors from several machines reach the service in any order: a client says when the
    create of what it updates is its own (queued, perhaps not sent yet)."""
    update = write("run.update", {"id": "late", "status": "completed"})
    api.send({**update, "create_queued": True})
    api.send(write("run.create", {"id": "late", "experiment_id": "e", "name": "arm"}))
    run = api.get("/runs/late")
    assert (run["name"], run["experiment_id"], run["status"]) == ("arm", "e", "completed")


@pytest.mark.parametrize("op", ["experiment.update", "generation.update", "run.update"])
def test_an_update_of_an_unknown_id_is_a_404_and_applies_nothing(
    api: ProjectClient, other_api: ProjectClient, op: str
) -> None:
    kind = op.split(".")[0]
    other_api.send(write(f"{kind}.create", {"id": "theirs", **CREATE_FIELDS[kind]}))
    for unknown in ("never-made", "theirs"):  # another project's object is as unknown
        steps = write("run.steps", {"run_id": "r", "steps": [{"step": 1, "metrics": {"x": 1}}]})
        response = api.post_writes(steps, write(op, {"id": unknown, "status": "done"}))
        assert response.status_code == 404
        assert response.json()["detail"] == (
            f"writes[1].data.id: no {kind} {unknown!r} in this project (create it first)"
        )
    listing = "/experiments" if kind == "experiment" else "/runs"
    assert api.get(listing)[listing[1:]] == []  # no nameless object made
    with pytest.raises(AssertionError):
        api.get("/runs/r")
    # The create earlier in the same batch, or in an earlier one, makes the update fine.
    create = write(f"{kind}.create", {"id": "mine", **CREATE_FIELDS[kind]})
    assert api.send(create, write(op, {"id": "mine", "status": "done"}))["applied"] == 2
    assert api.send(write(op, {"id": "mine", "status": "again"}))["applied"] == 1


CREATE_FIELDS = {
    "experiment": {"name": "e"},
    "generation": {"experiment_id": "e", "index": 0},
    "run": {"experiment_id": "e", "name": "r"},
}


def test_a_step_keeps_the_value_written_last_whatever_arrives_last(api: ProjectClient) -> None:
    """An offline machine that logged a step first and syncs last changes nothing."""
    api.send(write("run.create", {"id": "r", "experiment_id": "e", "name": "arm"}))

    def at(when: float | None, *values: tuple[int, float]) -> dict[str, Any]:
        data = [{"step": s, "metrics": {"loss": v}} for s, v in values]
        entry = write("run.steps", {"run_id": "r", "steps": data})
        if when is None:
            del entry["time"]
        else:
            entry["time"] = when
        return entry

    online = [at(2000.0 + s, (s, 1.0 / s)) for s in range(1, 51)]
    offline = [at(1000.0 + s, (s, -1.0)) for s in range(1, 51)]
    api.send(*online)
    api.send(*offline)  # older: in a later batch
    api.send(*reversed(offline + online))  # the same ids again: duplicates
    api.send(at(1.0, (3, 7.0)), at(3000.0, (4, 0.5)), at(2.0, (4, 9.0)))  # one batch, any order
    api.send(at(None, (5, 9.0)))  # no time: older than any
    got = {s["step"]: s["value"] for s in api.get("/runs/r/steps")["steps"]}
    assert got == {s: (0.5 if s == 4 else 1.0 / s) for s in range(1, 51)}
    api.send(at(2999.0, (4, 0.25)))  # still older than 3000
    api.send(at(3000.0, (4, 0.75)))  # a tie: the later to arrive
    assert api.get("/runs/r/steps", name="loss")["steps"][3]["value"] == 0.75
