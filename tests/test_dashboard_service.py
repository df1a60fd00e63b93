"""The dashboard service over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL: keys,
project isolation, idempotent writes, step upserts, bad input, body limits, uploads, reads, the
schema's migrations and the ``evsys dashboard`` command."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra: pip install 'evsys[dashboard]'")
import httpx  # noqa: E402 - after the extra's check
from dashboard_server import (  # noqa: E402
    DATABASES,
    DashboardService,
    ProjectKey,
    fresh_database,
    running_dashboard,
)

import evsys  # noqa: E402

MAX_BODY = 256 * 1024
MAX_UPLOAD = 1024 * 1024


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardService]:
    directory = tmp_path_factory.mktemp("dashboard")
    with running_dashboard(
        request.param, directory, max_body=MAX_BODY, max_upload=MAX_UPLOAD
    ) as running:
        yield running


class Api:
    """One project's view of the service."""

    def __init__(self, service: DashboardService, project: ProjectKey) -> None:
        self.project = project
        self.http = httpx.Client(base_url=service.api, headers=project.headers, timeout=60)

    def post_writes(self, *writes: dict[str, Any]) -> httpx.Response:
        # json.dumps writes NaN and Infinity, as Python clients do; httpx's json= refuses them.
        body = json.dumps({"writes": list(writes)})
        return self.http.post(
            "/sdk/writes", content=body, headers={"Content-Type": "application/json"}
        )

    def send(self, *writes: dict[str, Any]) -> dict[str, int]:
        response = self.post_writes(*writes)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, kind: str, name: str, filename: str, content: bytes) -> httpx.Response:
        return self.http.post(f"/{kind}", data={"name": name}, files={"file": (filename, content)})


@pytest.fixture
def api(service: DashboardService) -> Iterator[Api]:
    client = Api(service, service.new_project())
    yield client
    client.http.close()


@pytest.fixture
def other_api(service: DashboardService) -> Iterator[Api]:
    client = Api(service, service.new_project())
    yield client
    client.http.close()


def write(op: str, data: dict[str, Any], write_id: str | None = None) -> dict[str, Any]:
    return {"id": write_id or uuid.uuid4().hex, "op": op, "data": data, "time": time.time()}


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


def everything(api: Api, experiment: str = "exp-1", run: str = "run-1") -> dict[str, Any]:
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


def test_a_revoked_key_is_refused(service: DashboardService, api: Api) -> None:
    assert api.get("/sdk/whoami")["project_id"] == api.project.id
    service.revoke(api.project.key)
    assert api.http.get("/sdk/whoami").status_code == 401
    assert api.post_writes(*sweep_writes()).status_code == 401


def test_whoami_names_the_project_and_refuses_another(api: Api) -> None:
    assert api.get("/sdk/whoami") == {
        "project_id": api.project.id,
        "project_name": api.project.name,
    }
    assert api.get("/sdk/whoami", project_id=api.project.name)["project_id"] == api.project.id
    assert api.http.get("/sdk/whoami", params={"project_id": "someone-else"}).status_code == 403


def test_a_key_reaches_only_its_own_project(api: Api, other_api: Api) -> None:
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
    hostile = sweep_writes()
    hostile[0]["data"]["hypothesis"] = "overwritten"
    hostile[3]["data"]["steps"] = [{"step": 1, "metrics": {"loss": 999.0}}]
    replayed = [write(w["op"], w["data"], w["id"]) for w in sweep_writes()]
    assert other_api.send(*replayed)["duplicates"] == 0
    assert other_api.send(*hostile) == {"applied": len(hostile), "duplicates": 0}
    assert everything(api) == before
    assert other_api.get("/runs/run-1/steps")["steps"][0]["value"] == 999.0


# --- writes ----------------------------------------------------------------------------------------


def test_a_replayed_batch_is_all_duplicates_and_changes_nothing(api: Api) -> None:
    writes = sweep_writes()
    assert api.send(*writes) == {"applied": len(writes), "duplicates": 0}
    first = everything(api)
    assert api.send(*writes) == {"applied": 0, "duplicates": len(writes)}
    assert api.send(*reversed(writes)) == {"applied": 0, "duplicates": len(writes)}
    assert everything(api) == first
    assert len(first["predictions"]) == 2 and len(first["steps"]) == 6


def test_the_same_write_twice_in_one_batch_applies_once(api: Api) -> None:
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


def test_a_step_metric_is_one_row_and_the_later_value_wins(api: Api) -> None:
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


def test_concurrent_batches_lose_nothing(api: Api) -> None:
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
    api: Api, bad: Any, named: str
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
            b'{"writes": [{"id": "w", "op": "run.update", "data": {"id": "r", "summary": {"acc": NaN}}}] }',
            None,
        ),
    ],
)
def test_a_malformed_body_is_a_clear_4xx(api: Api, body: bytes, named: str | None) -> None:
    response = api.http.post(
        "/sdk/writes", content=body, headers={"Content-Type": "application/json"}
    )
    if named is None:  # NaN is JSON to Python's parser: accepted, stored as null
        assert response.status_code == 200
        assert api.get("/runs/r")["summary"] == {"acc": None}
        return
    assert response.status_code == 422
    assert named in response.json()["detail"]


def test_more_than_a_thousand_writes_are_refused(api: Api) -> None:
    writes = [write("run.steps", {"run_id": "r", "steps": []}) for _ in range(1001)]
    response = api.post_writes(*writes)
    assert response.status_code == 422
    assert "at most 1000" in response.json()["detail"]


def test_values_the_databases_cannot_hold_are_stored_cleanly(api: Api) -> None:
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
    assert run["config"] == {"inf": None, "huge": None}
    assert api.get("/runs/r/steps")["steps"] == [{"step": 1, "name": "loss", "value": None}]


# --- limits ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(api: Api) -> None:
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


def test_an_upload_over_its_limit_is_413_and_stores_nothing(
    service: DashboardService, api: Api
) -> None:
    before = stored_files(service)
    response = api.upload("datasets", "big", "rows.jsonl", b'{"a": 1}\n' * (MAX_UPLOAD // 9 + 1))
    assert response.status_code == 413
    assert api.get("/datasets") == {"datasets": []}
    assert stored_files(service) == before
    # Uploads have their own limit, above the write limit.
    fits = b'{"a": 1}\n' * (MAX_BODY // 9 + 100)
    assert api.upload("datasets", "big", "rows.jsonl", fits).status_code == 200


# --- datasets and benchmarks -------------------------------------------------------------------------


def stored_files(service: DashboardService) -> set[str]:
    return {
        str(p.relative_to(service.store_dir)) for p in service.store_dir.rglob("*") if p.is_file()
    }


def test_dataset_versions_are_immutable_and_a_name_is_its_latest(
    service: DashboardService, api: Api
) -> None:
    v1 = api.upload("datasets", "math", "train.jsonl", b'{"q": "1+1", "a": "2"}\n').json()
    assert (v1["name"], v1["version"], v1["size"]) == ("math", 1, 23)
    again = api.upload("datasets", "math", "other-name.jsonl", b'{"q": "1+1", "a": "2"}\n').json()
    assert again == v1  # the same bytes: the same version
    v2 = api.upload("datasets", "math", "train.jsonl", b'{"q": "2+2", "a": "4"}\n\n').json()
    assert v2["version"] == 2 and v2["id"] != v1["id"] and v2["sha256"] != v1["sha256"]

    assert api.get("/datasets/math") == v2
    assert api.get(f"/datasets/{v1['id']}") == v1
    assert api.get("/datasets/math", version=1) == v1
    assert [d["version"] for d in api.get("/datasets", name="math")["datasets"]] == [2, 1]
    content = api.http.get(f"/datasets/{v1['id']}/content")
    assert content.content == b'{"q": "1+1", "a": "2"}\n'
    assert content.headers["content-type"] == "application/x-ndjson"
    assert api.http.get("/datasets/math/content").content == b'{"q": "2+2", "a": "4"}\n\n'

    # The stored file is read-only, at a path the service made.
    stored = [service.store_dir / p for p in stored_files(service) if v1["id"] in p]
    assert len(stored) == 1 and stored[0].name == "data.jsonl"
    assert not stored[0].stat().st_mode & 0o222
    assert api.http.get("/datasets/nope").status_code == 404


def harbor_archive(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_a_benchmark_archive_is_stored_as_its_bytes(api: Api) -> None:
    task_dir = tarfile.TarInfo("task-1")
    task_dir.type = tarfile.DIRTYPE
    archive = harbor_archive(
        [task_dir, ("task-1/task.toml", b"[task]\n"), ("task-1/instruction.md", b"do it")]
    )
    record = api.upload("benchmarks", "harbor-mini", "suite.tar.gz", archive).json()
    assert record["version"] == 1 and record["format"] == "tar.gz"
    content = api.http.get(f"/benchmarks/{record['id']}/content")
    assert content.content == archive
    assert content.headers["content-type"] == "application/gzip"
    jsonl = api.upload("benchmarks", "prompts", "b.jsonl", b'{"prompt": "hi"}\n').json()
    assert jsonl["format"] == "jsonl"


@pytest.mark.parametrize(
    ("member", "named"),
    [
        (("/etc/evil", b"x"), "absolute paths are refused"),
        (("task/../../evil", b"x"), "'..' is refused"),
        (special("task/link", tarfile.SYMTYPE, "/etc/passwd"), "links, devices"),
        (special("task/hard", tarfile.LNKTYPE, "task/a"), "links, devices"),
        (special("task/dev", tarfile.CHRTYPE), "links, devices"),
        (special("task/fifo", tarfile.FIFOTYPE), "links, devices"),
    ],
    ids=["absolute", "dotdot", "symlink", "hardlink", "device", "fifo"],
)
def test_a_hostile_archive_is_refused_and_nothing_is_stored(
    service: DashboardService, api: Api, member: Any, named: str
) -> None:
    before = stored_files(service)
    archive = harbor_archive([("task/a", b"fine"), member])
    response = api.upload("benchmarks", "hostile", "suite.tar.gz", archive)
    assert response.status_code == 400
    assert named in response.json()["detail"]
    assert api.get("/benchmarks") == {"benchmarks": []}
    assert stored_files(service) == before


@pytest.mark.parametrize(
    ("kind", "name", "filename", "content", "named"),
    [
        ("datasets", "../up", "a.jsonl", b"{}\n", "name '../up'"),
        ("datasets", "a/b", "a.jsonl", b"{}\n", "name 'a/b'"),
        ("datasets", "ok", "a.tar.gz", b"{}\n", "datasets takes a .jsonl file"),
        ("datasets", "ok", "a.jsonl", b"", "is empty"),
        ("datasets", "ok", "a.jsonl", b'{"a": 1}\nnot json\n', "line 2 is not JSON"),
        ("benchmarks", "ok", "a.tar.gz", b"not gzip", "not a readable .tar.gz archive"),
        ("benchmarks", "ok", "a.exe", b"MZ", "benchmarks takes a .jsonl file or a .tar.gz"),
    ],
)
def test_a_bad_upload_is_400_and_stores_nothing(
    service: DashboardService,
    api: Api,
    kind: str,
    name: str,
    filename: str,
    content: bytes,
    named: str,
) -> None:
    before = stored_files(service)
    response = api.upload(kind, name, filename, content)
    assert response.status_code == 400
    assert named in response.json()["detail"]
    assert stored_files(service) == before


def test_an_upload_without_its_fields_is_422(api: Api) -> None:
    response = api.http.post("/datasets", data={"name": "x"})
    assert response.status_code == 422
    assert "file" in response.json()["detail"]


# --- reads ----------------------------------------------------------------------------------------


def test_reads_give_back_what_was_written(api: Api) -> None:
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


def test_an_update_before_its_create_still_lands(api: Api) -> None:
    """Mirrors from several machines reach the service in any order."""
    api.send(write("run.update", {"id": "late", "status": "completed"}))
    api.send(write("run.create", {"id": "late", "experiment_id": "e", "name": "arm"}))
    run = api.get("/runs/late")
    assert (run["name"], run["experiment_id"], run["status"]) == ("arm", "e", "completed")


# --- schema and command ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", DATABASES)
def test_the_migrations_build_exactly_the_models(database: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from evsys.dashboard.db import make_engine, upgrade
    from evsys.dashboard.models import Base

    with fresh_database(database, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            upgrade(engine)  # at head already: nothing to do
            with engine.connect() as connection:
                assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        finally:
            engine.dispose()


def test_postgresql_tests_skip_without_a_server_unless_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dashboard_server import postgres_url

    monkeypatch.delenv("EVSYS_TEST_POSTGRES_URL", raising=False)
    monkeypatch.delenv("EVSYS_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="EVSYS_TEST_POSTGRES_URL"):
        postgres_url()
    monkeypatch.setenv("EVSYS_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="scripts/postgres start"):
        postgres_url()
    monkeypatch.setenv("EVSYS_TEST_POSTGRES_URL", "postgresql+psycopg://u:p@127.0.0.1:1/db")
    assert postgres_url() == "postgresql+psycopg://u:p@127.0.0.1:1/db"


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest.fixture
def dashboard_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Done]:
    """``evsys dashboard ARGS`` in this process, in a scratch working directory."""
    from evsys.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Done:
        with pytest.raises(SystemExit) as exit_info:
            main(["dashboard", *args])
        captured = capsys.readouterr()
        return Done(exit_info.value.code, captured.out, captured.err)

    return run


def test_create_key_then_serve_then_revoke(
    tmp_path: Path, dashboard_cli: Callable[..., Done]
) -> None:
    created = dashboard_cli("create-key", "--project", "team")
    assert created.code == 0, created.err
    key = created.out.strip()
    assert key.startswith("evsys_") and "shown once" in created.err
    assert (tmp_path / ".evsys" / "dashboard.db").is_file()  # the default database

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "evsys.cli", "dashboard", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/dashboard/api"
        wait_for(f"{api}/health", server)
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api}/sdk/whoami", headers=headers).json()["project_name"] == "team"
        prefix = key[:14]
        revoked = dashboard_cli("revoke-key", prefix)
        assert revoked.code == 0 and prefix in revoked.out
        assert httpx.get(f"{api}/sdk/whoami", headers=headers).status_code == 401
        assert "revoked" in dashboard_cli("keys").out
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["keys", "--db", "mysql://u@host/db"], "runs on SQLite"),
        (["keys", "--db", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open the database"),
        (["serve", "--db", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open the database"),
        (["create-key", "--project", "../etc"], "project name '../etc'"),
        (["serve", "--store", "/proc/no/such"], "--store /proc/no/such: cannot create it"),
        (["revoke-key", "evsys_nothing"], "no key has the prefix 'evsys_nothing'"),
    ],
)
def test_bad_input_to_the_command_is_one_line_and_exit_2(
    args: list[str], named: str, dashboard_cli: Callable[..., Done]
) -> None:
    done = dashboard_cli(*args)
    assert done.code == 2
    assert named in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert "secret" not in done.err  # the password is not echoed


def test_a_database_of_a_newer_evsys_is_refused_in_one_line(
    tmp_path: Path, dashboard_cli: Callable[..., Done]
) -> None:
    import contextlib
    import sqlite3

    assert dashboard_cli("create-key", "--project", "p").code == 0
    database = tmp_path / ".evsys" / "dashboard.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    done = dashboard_cli("keys")
    assert done.code == 2
    assert "cannot open the database" in done.err and "9999_from_the_future" in done.err


def test_without_the_extra_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from evsys.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "keys"])
    assert exit_info.value.code == 2
    assert "pip install 'evsys[dashboard]'" in capsys.readouterr().err


def test_evsys_and_its_command_line_stay_without_the_service_stack(tmp_path: Path) -> None:
    code = (
        "import sys, evsys\n"
        "from evsys.cli import main\n"
        "try:\n    main(['dashboard', '--help'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'alembic', 'jinja2', 'starlette') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- helpers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"evsys dashboard serve exited: {server.communicate()[1]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 60 s")
