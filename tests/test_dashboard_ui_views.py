"""The web UI's pure parts: session cookies, the arms table, charts and the compare view."""

from __future__ import annotations

import os
import stat

import pytest

pytest.importorskip("fastapi")

from evsys.dashboard.ui import views  # noqa: E402
from evsys.dashboard.ui.charts import ArmValue, axis_chart, line_chart, nice_ticks  # noqa: E402
from evsys.dashboard.ui.sessions import SessionSigner, load_or_create_secret  # noqa: E402


def arm(run_id: str, lr: float, rank: int, score: float | None, **summary: float) -> dict:
    metrics = {} if score is None else {"eval/exact_match": score}
    return {
        "id": run_id,
        "name": f"arm-{run_id}",
        "status": "completed",
        "overrides": [f"algorithm.params.learning_rate={lr}", f"+algorithm.params.rank={rank}"],
        "config": {"algorithm": {"params": {"learning_rate": lr, "rank": rank}}, "seed": 1},
        "summary": {**metrics, **summary},
    }


def experiment(*arms: dict, **fields: object) -> dict:
    return {
        "id": "e1",
        "success_metric": "eval/exact_match",
        "direction": "maximize",
        "best_run_id": None,
        "runs": list(arms),
        **fields,
    }


# ---- sessions ---------------------------------------------------------------------------------


def test_a_session_cookie_reads_back_and_any_change_to_it_is_refused() -> None:
    signer = SessionSigner(b"s" * 32)
    value = signer.issue("7", "project-a", now=1000)
    session = signer.read(value, now=1001)
    assert session is not None and (session.key_id, session.project_id) == ("7", "project-a")

    body, signature = value.split(".")
    forged = SessionSigner(b"t" * 32).issue("7", "project-b", now=1000)
    assert signer.read(forged, now=1001) is None  # signed under another secret
    assert signer.read(forged.split(".")[0] + "." + signature, now=1001) is None  # swapped body
    assert signer.read(value + "x", now=1001) is None
    assert signer.read("", now=1001) is None
    assert signer.read("a.b.c", now=1001) is None
    assert signer.read(value, now=session.expires + 1) is None  # expired


def test_the_session_secret_is_made_once_private_and_shared(tmp_path) -> None:
    first = load_or_create_secret(tmp_path / "store")
    assert len(first) == 32
    assert load_or_create_secret(tmp_path / "store") == first
    mode = os.stat(tmp_path / "store" / "ui-session-secret").st_mode
    assert stat.S_IMODE(mode) == 0o600


# ---- the arms table ---------------------------------------------------------------------------


def test_the_swept_axes_come_from_the_overrides_and_only_keys_that_vary() -> None:
    arms = [arm("a", 1e-5, 8, 0.5), arm("b", 1e-4, 8, 0.7), arm("c", 1e-3, 8, 0.6)]
    axes = views.swept_axes(arms)
    assert list(axes) == ["algorithm.params.learning_rate"]  # rank is the same in every arm
    assert axes["algorithm.params.learning_rate"] == [1e-5, 1e-4, 1e-3]  # typed, from the config


def test_without_overrides_the_config_differences_are_the_axes() -> None:
    arms = [arm("a", 1e-5, 8, 0.5), arm("b", 1e-5, 16, 0.7)]
    for a in arms:
        a["overrides"] = []
    assert list(views.swept_axes(arms)) == ["algorithm.params.rank"]


def test_arms_sort_by_the_success_metric_best_first_and_missing_values_last() -> None:
    e = experiment(arm("a", 1e-5, 8, 0.5), arm("b", 1e-4, 16, None), arm("c", 1e-3, 32, 0.9))
    table, best, _ = views.arms_table(e, None, None, "/experiments/e1")
    assert [r["id"] for r in table.rows] == ["c", "a", "b"]
    assert (table.sort, table.order) == ("metric:eval/exact_match", "desc")
    assert best["id"] == "c" and [r["best"] for r in table.rows] == [True, False, False]

    table, _, _ = views.arms_table(e, "metric:eval/exact_match", "asc", "/experiments/e1")
    assert [r["id"] for r in table.rows] == ["a", "c", "b"]  # still last when ascending
    table, _, _ = views.arms_table(e, "axis:algorithm.params.rank", "desc", "/experiments/e1")
    assert [r["id"] for r in table.rows] == ["c", "b", "a"]  # numerically: 32 > 16 > 8


def test_a_minimized_metric_ranks_low_first_and_a_recorded_best_arm_wins() -> None:
    e = experiment(arm("a", 1e-5, 8, 0.5), arm("b", 1e-4, 16, 0.2), direction="minimize")
    table, best, _ = views.arms_table(e, None, None, "/e")
    assert [r["id"] for r in table.rows] == ["b", "a"] and best["id"] == "b"
    e["best_run_id"] = "a"
    assert views.arms_table(e, None, None, "/e")[1]["id"] == "a"


def test_only_a_completed_arm_is_ever_the_best() -> None:
    failed = arm("a", 1e-5, 8, 0.9) | {"status": "failed"}
    running = arm("b", 1e-4, 8, 0.8) | {"status": "running"}
    done = arm("c", 1e-3, 8, 0.3)
    e = experiment(failed, running, done)
    table, best, axes = views.arms_table(e, None, None, "/e")
    assert best["id"] == "c"  # the leader among completed arms, not the higher failed score
    assert [r["best"] for r in table.rows] == [False, False, True]  # rows: a, b, c by score

    e["best_run_id"] = "a"  # a sweep recorded a failed arm as its best: no best at all
    table, best, axes = views.arms_table(e, None, None, "/e")
    assert best is None and not any(r["best"] for r in table.rows)
    (chart,) = views.axis_charts(e, axes, best)
    assert not any(p.best for p in chart.points)

    e = experiment(failed, running)  # nothing completed yet
    assert views.arms_table(e, None, None, "/e")[1] is None


def test_an_unknown_sort_key_falls_back_and_headers_link_to_the_flipped_order() -> None:
    e = experiment(arm("a", 1e-5, 8, 0.5), arm("b", 1e-4, 16, 0.7))
    table, _, _ = views.arms_table(e, "metric:<script>", "sideways", "/experiments/e1")
    assert table.sort == "metric:eval/exact_match" and table.order == "desc"
    sorted_column = next(c for c in table.columns if c.sorted)
    assert sorted_column.href.endswith("order=asc")


def test_axis_charts_place_arms_on_a_log_axis_when_the_values_span_decades() -> None:
    e = experiment(arm("a", 1e-5, 8, 0.5), arm("b", 1e-4, 8, 0.7), arm("c", 1e-3, 8, 0.6))
    _, best, axes = views.arms_table(e, None, None, "/e")
    (chart,) = views.axis_charts(e, axes, best)
    xs = [p.x for p in chart.points]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)  # evenly spaced decades
    assert [t.label for t in chart.x_ticks] == ["1e-05", "0.0001", "0.001"]
    assert [p.best for p in chart.points] == [False, True, False]
    assert chart.points[1].y < chart.points[0].y  # a higher score is higher on the page


def test_a_categorical_axis_has_one_slot_per_value() -> None:
    points = [ArmValue("x", "sft", 0.1), ArmValue("y", "rl", 0.2), ArmValue("z", "sft", 0.3)]
    chart = axis_chart("algorithm", "score", points)
    assert [t.label for t in chart.x_ticks] == ["sft", "rl"]
    assert chart.points[0].x == chart.points[2].x != chart.points[1].x


def test_a_long_curve_is_thinned_and_keeps_its_last_point() -> None:
    points = [(step, float(step % 7)) for step in range(5001)]
    chart = line_chart("train/loss", points)
    drawn = chart.polyline.split()
    assert len(drawn) <= 601
    assert drawn[-1].split(",")[0] == str(float(chart.plot_right))


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.5, 1.0]
    assert nice_ticks(-0.3, 0.3) == [-0.2, 0.0, 0.2]
    ticks = nice_ticks(3.2, 97.0)
    assert ticks[0] >= 3.2 and ticks[-1] <= 97.0 and all(t % 10 == 0 for t in ticks)


# ---- compare ----------------------------------------------------------------------------------


def test_compare_shows_what_evsys_diff_shows_for_each_run_against_the_first() -> None:
    a = arm("a", 1e-5, 8, 0.5, loss=1.0)
    b = arm("b", 1e-4, 8, 0.7, loss=1.0)
    c = arm("c", 1e-5, 16, 0.4)
    c["config"]["extra"] = "x"
    result = views.compare([a, b, c])
    by_key = {row["key"]: [v["text"] for v in row["cells"]] for row in result.config}
    assert by_key == {
        "algorithm.params.learning_rate": ["1e-05", "0.0001", "1e-05"],
        "algorithm.params.rank": ["8", "8", "16"],
        "extra": ["(absent)", "(absent)", '"x"'],
    }
    differs = {row["key"]: [v["differs"] for v in row["cells"]] for row in result.config}
    assert differs["algorithm.params.rank"] == [False, False, True]
    deltas = {row["name"]: [v["delta"] for v in row["cells"]] for row in result.metrics}
    assert deltas == {"eval/exact_match": ["", "+0.2", "-0.1"], "loss": ["", "0", ""]}


def test_compare_takes_runs_from_the_comma_list_and_the_checkboxes_once_each() -> None:
    assert views.run_ids_from_query("a, b,,a", ["c", "b"]) == ["a", "b", "c"]
    assert views.run_ids_from_query(None, []) == []


# ---- the experiment page, rendered by the service ---------------------------------------------


def test_the_experiment_page_marks_no_failed_run_best(dashboard) -> None:
    """A sweep that recorded a failed arm as its best (and a generation that did): the page
    shows no best arm, badge, green row, chart dot or best score, and the list of experiments no
    best score; once that arm completes, they show all of them."""
    import httpx
    from dashboard_server import ProjectClient, write

    project = dashboard.new_project()
    writes = ProjectClient(dashboard, project)
    metric = "eval/exact_match"
    experiment = {"id": "e-failed", "name": "e", "success_metric": metric}
    failed = {"id": "r-failed", "name": "broken arm", "generation_id": "g0", "config": {"lr": 1}}
    done = {"id": "r-done", "name": "fine arm", "status": "completed", "config": {"lr": 2}}
    recorded = {"best_run_id": "r-failed", "best_score": 0.987}
    with writes.http, httpx.Client(base_url=dashboard.url, timeout=30) as browser:
        writes.send(
            write("experiment.create", experiment),
            write("generation.create", {"id": "g0", "experiment_id": "e-failed", "index": 0}),
            write("run.create", {"experiment_id": "e-failed"} | failed),
            write("run.update", {"id": "r-failed", "status": "failed", "summary": {metric: 0.9}}),
            write("run.create", {"experiment_id": "e-failed"} | done),
            write("run.update", {"id": "r-done", "summary": {metric: 0.1}}),
            write("generation.update", {"id": "g0"} | recorded),
            write("experiment.update", {"id": "e-failed", "status": "failed"} | recorded),
        )
        assert browser.post("/login", data={"api_key": project.key}).status_code == 303
        page = browser.get("/experiments/e-failed").text
        assert "broken arm" in page and "fine arm" in page
        assert 'id="best-arm"' not in page and 'class="badge best"' not in page
        assert 'class="best"' not in page and "0.987" not in page
        assert 'class="dot"' in page and 'class="dot best"' not in page
        listing = browser.get("/")
        assert listing.status_code == 200 and 'href="/experiments/e-failed"' in listing.text
        assert "0.987" not in listing.text  # nor does the list of experiments

        writes.send(write("run.update", {"id": "r-failed", "status": "completed"}))
        page = browser.get("/experiments/e-failed").text
        assert '<a id="best-arm" href="/runs/r-failed">broken arm</a>' in page
        assert '<tr data-run-id="r-failed" class="best">' in page
        assert page.count("0.987") == 2  # the experiment's best score and the generation's
        assert page.count('class="dot best"') == 1  # on the chart of the swept axis
        assert "0.987" in browser.get("/").text
