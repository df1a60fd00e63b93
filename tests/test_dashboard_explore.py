"""The experiment page's exploring, piece by piece: the query string a reader sends (parsed
or refused, never a crash), filters and search, group-by statistics, the parallel-coordinates
and heat-map data, and the curves the database downsamples (on SQLite and PostgreSQL). The
thousand-arm sweep end to end, timed and in chromium, is tests/test_dashboard_thousand_arms.py.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from evsys.dashboard.ui import arm_charts, curve_reads  # noqa: E402
from evsys.dashboard.ui.arm_query import (  # noqa: E402
    BadQuery,
    group_arms,
    parse_query,
    select_arms,
)
from evsys.dashboard.ui.experiment_view import arms_page, best_score, export_rows  # noqa: E402


def arm(run_id: str, lr: float, rank: int, seed: int, score: float | None, **kw: Any) -> dict:
    return {
        "id": run_id,
        "name": kw.pop("name", run_id),
        "status": kw.pop("status", "completed"),
        "config": {"algorithm": {"params": {"lr": lr, "rank": rank}}, "seed": seed},
        "overrides": [f"algorithm.params.lr={lr}", f"algorithm.params.rank={rank}"],
        "seed": seed,
        "summary": {} if score is None else {"acc": score},
    } | kw


ARMS = [
    arm(f"r{i}{j}{s}", lr, rank, s, round(0.5 + i * 0.1 + j * 0.01 + s * 0.001, 4))
    for i, lr in enumerate([1e-5, 1e-4, 1e-3])
    for j, rank in enumerate([8, 32])
    for s in range(3)
]


def experiment(arms: list[dict], **fields: Any) -> dict:
    return {"id": "e", "success_metric": "acc", "direction": "maximize", "runs": arms} | fields


def test_a_query_string_is_parsed_and_a_bad_parameter_named() -> None:
    query = parse_query({"q": ["x"], "where": ["a.b=1", " c = two "], "page": ["3"]})
    assert (query.search, query.where, query.page) == ("x", [("a.b", "1"), ("c", "two")], 3)
    for params, named in [
        ({"page": ["0"]}, "page"),
        ({"page": ["２"]}, "page"),  # a full-width digit is no page number
        ({"per_page": ["33"]}, "per_page"),
        ({"where": ["nokey"]}, "where"),
        ({"where": ["=v"]}, "where"),
        ({"q": ["a", "b"]}, "q"),
        ({"group": ["x\x00"]}, "group"),
    ]:
        with pytest.raises(BadQuery, match=f"^{named}: "):
            parse_query(params)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["q", "status", "where", "sort", "order", "page", "per_page", "cols"]),
        st.lists(st.text(max_size=30), max_size=3),
    )
)
def test_any_query_string_parses_or_is_refused_by_name(params: dict[str, list[str]]) -> None:
    try:
        query = parse_query(params)
    except BadQuery as error:
        assert str(error).split(":")[0] in params
        return
    page = arms_page(experiment(ARMS), query, "/experiments/e")  # and the page builds
    assert page.matched <= len(ARMS) and 1 <= page.page <= page.pages


def test_filters_search_and_status_select_arms_by_their_config() -> None:
    def ids(**params: list[str]) -> list[str]:
        return [a["id"] for a in select_arms(ARMS, parse_query(params))]

    assert ids(where=["algorithm.params.rank=32", "seed=2"]) == ["r012", "r112", "r212"]
    assert ids(where=["algorithm.params.lr=0.001", "algorithm.params.rank=8"]) == [
        "r200",
        "r201",
        "r202",
    ]
    assert ids(where=["no.such.key=1"]) == []
    assert ids(q="R11") == ["r110", "r111", "r112"]  # the name, case-insensitively
    failed = [arm("bad", 1, 1, 1, None, status="failed", name="<b>x</b>")]
    assert [a["id"] for a in select_arms(ARMS + failed, parse_query({"status": ["failed"]}))] == [
        "bad"
    ]


def test_a_page_of_the_table_keeps_the_query_in_its_links_and_picks_columns() -> None:
    query = parse_query({"where": ["seed=1"], "per_page": ["25"], "cols": ["metric:acc"]})
    page = arms_page(experiment(ARMS), query, "/experiments/e")
    assert page.matched == 6 and page.pages == 1 and "next" not in page.links
    assert [c.key for c in page.table.columns] == ["name", "metric:acc"]
    assert page.table.rows[0]["id"] == "r211" and page.table.rows[0]["cells"][0]["text"] == "0.711"
    assert all("where=seed%3D1" in c.href for c in page.table.columns)
    assert "where=seed%3D1" in page.links["csv"] and "per_page" not in page.links["csv"]
    keys, labels, rows = export_rows(experiment(ARMS), query)
    assert keys == ["id", "name", "status", "metric:acc"] and labels[-1] == "acc"
    assert [r[0] for r in rows][:2] == ["r211", "r201"]


def test_the_best_score_always_stands_beside_the_best_arm() -> None:
    leader = max(ARMS, key=lambda a: a["summary"]["acc"])
    assert best_score(experiment(ARMS), leader) == leader["summary"]["acc"]  # none recorded
    recorded = experiment(ARMS, best_run_id=leader["id"], best_score=0.99)
    assert best_score(recorded, leader) == 0.99
    assert best_score(recorded, None) is None
    page = arms_page(experiment(ARMS), parse_query({}), "/e")
    assert page.best["id"] == leader["id"] and page.best_score == leader["summary"]["acc"]


def test_group_by_gives_the_mean_and_std_over_each_settings_seeds() -> None:
    groups = group_arms(ARMS, "algorithm.params.lr", ["acc"])
    assert [g.value for g in groups] == ["1e-05", "0.0001", "0.001"]  # numeric order
    first = [a["summary"]["acc"] for a in ARMS[:6]]
    mean, std, n = groups[0].stats["acc"]
    assert (n, groups[0].arms, groups[0].seeds) == (6, 6, ["0", "1", "2"])
    assert math.isclose(mean, statistics.fmean(first)) and math.isclose(
        std, statistics.stdev(first)
    )
    lonely = group_arms(
        [ARMS[0], arm("x", 1, 1, 1, 0.2, config={}, overrides=[]), ARMS[1]],
        "algorithm.params.lr",
        ["acc"],
    )
    assert [g.value for g in lonely] == ["1e-05", "(absent)"]
    assert lonely[0].arms == 2 and lonely[-1].stats["acc"][1] is None  # one value: no std


def test_parallel_coordinates_and_the_heat_map_place_every_arm() -> None:
    view = arm_charts.parallel(ARMS, ["algorithm.params.lr", "algorithm.params.rank"], "acc")
    assert [a["kind"] for a in view["axes"]] == ["log", "linear", "linear"]
    assert len(view["arms"]) == len(ARMS) and view["arms"][0]["values"] == [1e-5, 8, 0.5]
    heat = arm_charts.heatmap(ARMS, "algorithm.params.lr", "algorithm.params.rank", "acc")
    assert heat["x"] == ["1e-05", "0.0001", "0.001"] and heat["y"] == ["8", "32"]
    cell = heat["cells"][1][2]  # rank 32, lr 1e-3
    assert cell["n"] == 3 and math.isclose(cell["mean"], 0.5 + 0.2 + 0.01 + 0.001)
    words = arm_charts.parallel([arm("a", 1, 1, 1, 0.1, config={"opt": "adam"})], ["opt"], None)
    assert words["axes"][0] == {"key": "opt", "kind": "category", "categories": ["adam"]}


# ---- curves, downsampled by the database ----------------------------------------------------


def test_curves_are_bucketed_on_a_shared_grid_keeping_each_buckets_extremes(dashboard) -> None:
    from dashboard_server import ProjectClient, write

    project = dashboard.new_project()
    steps = [
        {"step": s, "metrics": {"loss": 10.0 if s == 57 else 1.0 / (1 + s)}} for s in range(200)
    ]
    writes = ProjectClient(dashboard, project)
    with writes.http:
        for run_id in ("a", "b"):
            writes.send(
                write("run.create", {"id": run_id, "experiment_id": "e", "name": run_id}),
                write(
                    "run.steps", {"run_id": run_id, "steps": steps[: 200 if run_id == "a" else 100]}
                ),
            )
    with dashboard.app.state.sessions() as db:
        every = curve_reads.curves(db, project.id, ["a", "b"], "loss", points=None)
        assert every["a"].x == list(range(200)) and len(every["b"].x) == 100
        found = curve_reads.curves(db, project.id, ["a", "b", "none"], "loss", points=20)
        by_time = curve_reads.curves(db, project.id, ["a"], "loss", x_mode="time", points=10)
        assert curve_reads.metric_names(db, project.id, ["a", "b"]) == ["loss"]
    assert list(found) == ["a", "b"]  # a run without the metric is left out
    a, b = found["a"], found["b"]
    assert len(a.x) == 20 and a.x[:2] == [4.5, 14.5]  # buckets of 10 steps, their mean step
    assert b.x == a.x[:10]  # the shorter run on the same grid
    assert max(a.high) == 10.0 and max(a.y) < 10.0  # the spike at step 57 survives as a high
    assert a.low[0] == 1.0 / 10 and a.y[-1] < a.y[0]
    assert len(by_time["a"].x) <= 11 and by_time["a"].x[0] >= 0


def test_grouped_curves_are_the_mean_and_std_of_their_runs_step_by_step() -> None:
    def curve(xs: list[float], ys: list[float | None]) -> curve_reads.Curve:
        return curve_reads.Curve(x=xs, y=ys, low=ys, high=ys)

    found = {
        "a": curve([0, 1, 2], [1.0, 2.0, None]),
        "b": curve([0, 1, 2], [3.0, 4.0, 5.0]),
        "c": curve([0, 1], [10.0, 10.0]),
    }
    grouped = curve_reads.group_curves(found, {"a": "lr=1", "b": "lr=1", "c": "lr=2"})
    one = grouped["lr=1"]
    assert one.x == [0, 1, 2] and one.y == [2.0, 3.0, 5.0]  # a gap is no value
    assert math.isclose(one.high[0] - one.y[0], statistics.stdev([1.0, 3.0]))
    assert one.low[2] == one.high[2] == 5.0  # one run at that step: no spread
    assert grouped["lr=2"].y == [10.0, 10.0]


def reference_buckets(
    runs: dict[str, dict[int, float]], points: int
) -> dict[str, list[tuple[float, float, float, float]]]:
    """The bucketing ``curve_reads.curves`` asks of the database, done in Python: one grid of
    equal buckets of steps from the first step any run logged, ``points`` at most."""
    steps = [s for values in runs.values() for s in values]
    low, high = min(steps), max(steps)
    width = max(1, math.ceil((high - low + 1) / points))
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for run_id, values in runs.items():
        buckets: dict[int, list[int]] = {}
        for step in sorted(values):
            buckets.setdefault((step - low) // width, []).append(step)
        out[run_id] = [
            (
                statistics.fmean(b),
                statistics.fmean(values[s] for s in b),
                min(values[s] for s in b),
                max(values[s] for s in b),
            )
            for _, b in sorted(buckets.items())
        ]
    return out


def test_curves_match_a_python_reference_whatever_the_runs_steps(dashboard, monkeypatch) -> None:
    """Runs of any steps (gaps, different ranges, none at all) and metrics: the database's
    buckets are the reference's, on one grid across every ``IN (…)`` chunk of runs (chunks
    of two here), and the metric names are every name any run logged."""
    from hypothesis import HealthCheck
    from sqlalchemy import insert

    from evsys.dashboard.models import Run, StepMetric

    monkeypatch.setattr(curve_reads, "IN_CHUNK", 2)
    values = st.floats(-1e6, 1e6, allow_nan=False)
    run_steps = st.dictionaries(st.integers(0, 500), values, max_size=30)
    names = st.sets(st.sampled_from(["loss", "acc", "eval/x", "z"]), max_size=3)

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(run_steps, names), min_size=1, max_size=5), st.integers(2, 40))
    def check(runs: list[tuple[dict[int, float], set[str]]], points: int) -> None:
        project = dashboard.new_project()
        ids = [f"r{i}" for i in range(len(runs))]
        rows = [
            {"project_id": project.id, "run_id": run_id, "step": step, "name": name, "value": v}
            | {"written_at": 1e9 + 60 * int(run_id[1:]) + step * 0.37}  # runs start apart
            for run_id, (steps, extra) in zip(ids, runs, strict=True)
            for name in {"loss"} | extra
            if steps
            for step, v in steps.items()
        ]
        with dashboard.app.state.sessions() as db:
            db.execute(insert(Run), [{"project_id": project.id, "id": i} for i in ids])
            if rows:
                db.execute(insert(StepMetric), rows)
            db.commit()
            found = curve_reads.curves(db, project.id, ids, "loss", points=points)
            every = curve_reads.curves(db, project.id, ids, "loss", points=None)
            logged = curve_reads.metric_names(db, project.id, ids)
            by_time = curve_reads.curves(db, project.id, ids, "loss", x_mode="time", points=points)
            monkeypatch.setattr(curve_reads, "IN_CHUNK", 10_000)  # one statement, same grid
            at_once = curve_reads.curves(db, project.id, ids, "loss", x_mode="time", points=points)
            monkeypatch.setattr(curve_reads, "IN_CHUNK", 2)
        assert list(by_time) == list(at_once)
        for run_id, curve in by_time.items():
            for got, one in zip(vars(curve).values(), vars(at_once[run_id]).values(), strict=True):
                assert len(got) == len(one) and all(map(math.isclose, got, one)), run_id
        with_steps = {i: steps for i, (steps, _) in zip(ids, runs, strict=True) if steps}
        expected_names = {"loss"} | {n for steps, extra in runs if steps for n in extra}
        assert logged == sorted(expected_names if with_steps else set())
        assert list(found) == list(every) == list(with_steps)  # in the order asked
        for run_id, steps in with_steps.items():
            assert every[run_id].x == sorted(steps)
            assert every[run_id].y == [steps[s] for s in sorted(steps)]
        if not with_steps:
            return
        for run_id, expected in reference_buckets(with_steps, points).items():
            curve = found[run_id]
            got = list(zip(curve.x, curve.y, curve.low, curve.high, strict=True))
            assert len(got) == len(expected), run_id
            for g, e in zip(got, expected, strict=True):
                assert g[0] == e[0] and g[2:] == e[2:]  # x and the extremes exactly
                assert math.isclose(g[1], e[1], rel_tol=1e-9, abs_tol=1e-6)  # a sum's order

    check()


def test_a_mean_that_overflows_is_a_gap_not_an_infinity(dashboard) -> None:
    """Two values near the largest float average to an infinity on SQLite (PostgreSQL refuses
    the sum): the curve has a gap there, so its JSON stays JSON."""
    from sqlalchemy import insert

    from evsys.dashboard.models import Run, StepMetric

    if dashboard.database != "sqlite":
        pytest.skip("PostgreSQL raises on the overflowing sum instead")
    project = dashboard.new_project()
    big = [1.5e308, 1.6e308, 1.0, 2.0]
    with dashboard.app.state.sessions() as db:
        db.execute(insert(Run), [{"project_id": project.id, "id": "a"}])
        db.execute(
            insert(StepMetric),
            [
                {"project_id": project.id, "run_id": "a", "step": s, "name": "m", "value": v}
                for s, v in enumerate(big * 10)
            ],
        )
        db.commit()
        curve = curve_reads.curves(db, project.id, ["a"], "m", points=20)["a"]
    assert None in curve.y and all(y is None or math.isfinite(y) for y in curve.y)
    assert max(curve.high) == 1.6e308  # the extremes are still there


# ---- the live part of the page: 304 while nothing it shows has changed ----------------------


def test_a_live_poll_answers_304_until_what_it_shows_changes(dashboard) -> None:
    """The fragment's ETag (the page carries it for the first poll) comes back 304 while only
    steps stream in, and changes with an arm's end, a new arm, a conclusion, and a write whose
    client time is older than the row's: the version is the rows' text, not their times."""
    import html

    import httpx
    from dashboard_server import ProjectClient, write

    project = dashboard.new_project()
    writes = ProjectClient(dashboard, project)
    live = "/experiments/e/live?sort=name"
    with writes.http, httpx.Client(base_url=dashboard.url, timeout=30) as ui:
        writes.send(
            write("experiment.create", {"id": "e", "name": "live", "success_metric": "acc"}),
            write("run.create", {"id": "a", "experiment_id": "e", "name": "arm a"}),
        )
        assert ui.post("/login", data={"api_key": project.key}).status_code == 303
        page = ui.get("/experiments/e?sort=name").text
        shown = html.unescape(page.split('data-live-version="')[1].split('"')[0])

        def poll(etag: str) -> httpx.Response:
            return ui.get(live, headers={"If-None-Match": etag})

        assert poll(shown).status_code == 304  # the page's own fragment: nothing to swap
        first = ui.get(live)
        assert first.status_code == 200 and first.headers["etag"] == shown
        steps = {"run_id": "a", "steps": [{"step": 1, "metrics": {"loss": 0.5}}]}
        writes.send(write("run.steps", steps))
        unchanged = poll(shown)
        assert unchanged.status_code == 304 and unchanged.content == b""
        assert poll('"another"').status_code == 200
        assert (
            ui.get("/experiments/e/live?sort=status", headers={"If-None-Match": shown}).status_code
            == 200
        )

        etag = shown
        for change in (
            write("run.update", {"id": "a", "status": "completed", "summary": {"acc": 0.9}}),
            write("run.create", {"id": "b", "experiment_id": "e", "name": "arm b"}),
            write("experiment.update", {"id": "e", "conclusion": "a wins"}),
            write("run.update", {"id": "b", "error": "oom"}) | {"time": 1.0},  # 1970
        ):
            writes.send(change)
            answer = poll(etag)
            assert answer.status_code == 200 and answer.headers["etag"] != etag, change["data"]
            etag = answer.headers["etag"]
            assert poll(etag).status_code == 304
        assert "a wins" in answer.text and "arm b" in answer.text
        assert ui.get("/experiments/nope/live", headers={"If-None-Match": etag}).status_code == 404


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=12),
            st.text(max_size=12),
            st.lists(
                st.tuples(
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.none() | st.floats(allow_nan=False, allow_infinity=False),
                ),
                max_size=5,
            ),
        ),
        max_size=4,
    ),
    st.text(max_size=12),
)
def test_the_curves_csv_is_what_the_csv_module_writes_cell_by_cell(
    runs: list[tuple[str, str, list[tuple[float, float | None]]]], metric: str
) -> None:
    """The curves' CSV writes a run's id and name once for all its lines; any id, name or
    metric (quotes, commas, new lines, a formula's ``=``) reads back as the plain writer's."""
    import csv
    import io

    from evsys.dashboard.ui import explore_routes

    header = ["run_id", "name", "step", metric]
    rows = [
        {"id": run_id, "name": name, "x": [x for x, _ in points], "y": [y for _, y in points]}
        for run_id, name, points in runs
    ]
    plain = io.StringIO()
    writer = csv.writer(plain)
    writer.writerow([explore_routes._csv_cell(h) for h in header])
    for row in rows:
        for x, y in zip(row["x"], row["y"], strict=True):
            writer.writerow([explore_routes._csv_cell(v) for v in (row["id"], row["name"], x, y)])
    assert explore_routes._curves_csv(header, rows) == plain.getvalue()
