"""The dashboard on a sweep of a thousand arms × 300 steps, on SQLite and PostgreSQL: every page
and data endpoint answers within a second (measured, printed, asserted with a margin for a
loaded machine), filters, group-by, pagination and export are right, bad query parameters
answer 4xx (hypothesis), and in chromium the charts render and answer a hover.

Marked slow. The sweep is bulk-inserted into the service's own tables (a thousand arms through the writes
API would take minutes); one extra arm goes through the writes API, so both paths are read.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
# Seeding 300,000 step rows takes 20 s (SQLite) to a minute (PostgreSQL): the full suite
# (scripts/test) runs this module; the quick one has tests/test_dashboard_explore.py.
pytestmark = pytest.mark.slow

from test_dashboard_ui import HOSTILE, browser, log_in, screenshot, shots, wait_for  # noqa: E402,F401

LRS = [1e-5 * 2**i for i in range(10)]
RANKS = [2, 4, 8, 12, 16, 24, 32, 48, 64, 128]
SEEDS = list(range(10))
STEPS = 300
METRIC = "eval/exact_match"
BUDGET_S = 1.0
CORES = os.cpu_count() or 1


def margin() -> float:
    """How much slower than BUDGET_S an answer may be here: 2×, more on a machine whose load
    is over its cores (a shared test machine runs other suites at the same time; the measured
    times and the load are printed for the record). ``EVSYS_DASHBOARD_TIME_MARGIN`` sets it.
    The slowest answers, the curves of all 1,000 arms, took 0.7-0.8 s on SQLite and 0.7-1.3 s
    on PostgreSQL on 2 cores at a load of 1.7-2.5 (other suites running)."""
    if "EVSYS_DASHBOARD_TIME_MARGIN" in os.environ:
        return float(os.environ["EVSYS_DASHBOARD_TIME_MARGIN"])
    return max(2.0, 1.5 * os.getloadavg()[0] / CORES)


TIMINGS: dict[str, dict[str, float]] = {}


def score(lr: float, rank: int, seed: int) -> float:
    """Best near lr=1.28e-4 and rank 16, with a little seed noise."""
    return round(
        0.9
        - 0.05 * (math.log2(lr / 1.28e-4)) ** 2 / 10
        - 0.02 * abs(math.log2(rank / 16))
        + 0.01 * ((seed * 7) % 5 - 2),
        6,
    )


def arm_id(lr_index: int, rank_index: int, seed: int) -> str:
    return f"arm-{lr_index}-{rank_index}-{seed}"


def seed_sweep(service: Any, project_id: str) -> None:
    from sqlalchemy import insert

    from evsys.dashboard.models import Experiment, Run, StepMetric

    start = datetime(2026, 12, 1, tzinfo=UTC)
    runs, steps = [], []
    for i, lr in enumerate(LRS):
        for j, rank in enumerate(RANKS):
            for seed in SEEDS:
                run_id = arm_id(i, j, seed)
                value = score(lr, rank, seed)
                name = f"lr={lr:g},rank={rank},seed={seed}"
                if (i, j, seed) == (3, 3, 3):
                    name = HOSTILE
                runs.append(
                    {
                        "project_id": project_id,
                        "id": run_id,
                        "experiment_id": "big",
                        "name": name,
                        "status": "failed" if (i + j + seed) % 97 == 0 else "completed",
                        "config": {
                            "seed": seed,
                            "algorithm": {"params": {"learning_rate": lr, "lora_rank": rank}},
                        },
                        "overrides": [
                            f"algorithm.params.learning_rate={lr:g}",
                            f"algorithm.params.lora_rank={rank}",
                            f"seed={seed}",
                        ],
                        "seed": seed,
                        "summary": {METRIC: value, "train/loss": 1.0 - value},
                        "created_at": start + timedelta(seconds=len(runs)),
                    }
                )
                t0 = 1_790_000_000.0 + len(runs) * 60
                for step in range(STEPS):
                    loss = (1.0 - value) + 2.0 / (1 + step * lr * 1e3)
                    steps.append(
                        {
                            "project_id": project_id,
                            "run_id": run_id,
                            "step": step,
                            "name": "train/loss",
                            "value": loss,
                            "written_at": t0 + step * 0.5,
                        }
                    )
    with service.app.state.sessions() as db:
        db.add(
            Experiment(
                project_id=project_id,
                id="big",
                name="a thousand arms",
                success_metric=METRIC,
                direction="maximize",
                status="completed",
            )
        )
        db.execute(insert(Run), runs)
        db.execute(insert(StepMetric), steps)
        db.commit()


@pytest.fixture(scope="module")
def big(dashboard: Any) -> Iterator[tuple[Any, Any, Any]]:
    """The service with the thousand-arm sweep in a project of its own, an HTTP client logged
    in to it, and the project (its key)."""
    import httpx
    from dashboard_server import ProjectClient, write

    project = dashboard.new_project()
    began = time.perf_counter()
    seed_sweep(dashboard, project.id)
    print(
        f"\n[{dashboard.database}] seeded 1,000 arms × 300 steps in {time.perf_counter() - began:.1f} s"
    )
    extra = {"id": "arm-extra", "experiment_id": "big", "name": "written by the API"}
    writes = ProjectClient(dashboard, project)
    with writes.http:
        writes.send(
            write("run.create", extra | {"status": "completed", "config": {"seed": 99}}),
            write(
                "run.steps",
                {"run_id": "arm-extra", "steps": [{"step": 1, "metrics": {"train/loss": 0.5}}]},
            ),
        )
    with httpx.Client(base_url=dashboard.url, timeout=60) as client:
        assert client.post("/login", data={"api_key": project.key}).status_code == 303
        yield dashboard, client, project


def timed(client: Any, database: str, path: str, **params: Any) -> Any:
    client.get(path, params=params)  # warm: the first read of a table pays for its pages
    began = time.perf_counter()
    answer = client.get(path, params=params)
    elapsed = time.perf_counter() - began
    label = path + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
    TIMINGS.setdefault(database, {})[label] = elapsed
    assert answer.status_code == 200, (label, answer.text[:300])
    return answer


def test_every_page_and_endpoint_answers_within_a_second(big) -> None:
    service, client, _ = big
    db = service.database
    page = timed(client, db, "/experiments/big").text
    assert '<span id="arm-count">1001</span>' in page
    assert "page 1 of 21" in page and page.count("<tr data-run-id=") == 50
    # BEST SCORE beside BEST ARM: the leader's own score when the sweep recorded none.
    best = max(
        (score(lr, r, s), (i, j, s))
        for i, lr in enumerate(LRS)
        for j, r in enumerate(RANKS)
        for s in SEEDS
        if (i + j + s) % 97
    )
    assert f'<strong id="best-score">{best[0]:.4g}</strong>' in page
    assert f'href="/runs/{arm_id(*best[1])}"' in page
    assert HOSTILE not in page  # escaped

    live = timed(client, db, "/experiments/big/live")
    # the page's poll while nothing it shows has changed: its version alone, no arm read
    began = time.perf_counter()
    unchanged = client.get("/experiments/big/live", headers={"If-None-Match": live.headers["etag"]})
    TIMINGS[db]["/experiments/big/live (If-None-Match: 304)"] = time.perf_counter() - began
    assert unchanged.status_code == 304
    later = timed(client, db, "/experiments/big", page=21).text
    assert later.count("<tr data-run-id=") == 1001 - 20 * 50
    found = timed(client, db, "/experiments/big", q="rank=128,seed=9").text
    assert "10 of 1001 match" in found
    filtered = timed(
        client, db, "/experiments/big", where="algorithm.params.lora_rank=16", status="completed"
    ).text
    assert "100 of 1001 match" in filtered  # rank 16: ten learning rates × ten seeds
    grouped = timed(client, db, "/experiments/big", group="algorithm.params.learning_rate").text
    groups = grouped.split('id="groups"')[1].split("</table>")[0]
    assert groups.count("<tr><td>") == len(LRS) + 1  # and the arm without it: (absent)
    assert "±" in groups
    timed(client, db, "/experiments/big", sort="axis:algorithm.params.lora_rank", order="desc")
    timed(client, db, "/experiments/big", per_page=200, cols=["status", f"metric:{METRIC}"])

    exported = timed(client, db, "/experiments/big/arms.csv").text
    rows = list(csv.reader(io.StringIO(exported)))
    assert len(rows) == 1 + 1001 and rows[0][:3] == ["id", "name", "status"]
    assert [r[1] for r in rows].count(HOSTILE) == 1  # as text
    as_json = timed(client, db, "/experiments/big/arms.json", status="failed").json()
    assert as_json["rows"] and all(r["status"] == "failed" for r in as_json["rows"])

    curves = timed(client, db, "/experiments/big/curves.json").json()
    assert curves["metric"] == "train/loss" and len(curves["runs"]) == 100
    every = timed(client, db, "/experiments/big/curves.json", limit=1000, points=100).json()
    assert len(every["runs"]) == 1000
    # 50 buckets each at most (a budget of 50,000 points an answer), covering every step
    swept = [r for r in every["runs"] if r["id"] != "arm-extra"]
    assert all(len(r["x"]) <= 50 and r["x"][0] < 6 and r["x"][-1] > STEPS - 7 for r in swept)
    by_time = timed(client, db, "/experiments/big/curves.json", x="time", limit=1000).json()
    first = by_time["runs"][0]["x"]  # seconds since the arm's first value: 300 steps, 0.5 s apart
    assert (
        by_time["x"] == "time" and 0 <= first[0] < 3 and STEPS * 0.5 - 4 < first[-1] < STEPS * 0.5
    )
    exported = timed(client, db, "/experiments/big/curves.csv", metric="train/loss", limit=1000)
    assert exported.text.count("\n") == 1 + sum(len(r["x"]) for r in every["runs"])  # as drawn
    some = timed(client, db, "/experiments/big/curves.csv", points="all", limit=20).text
    assert some.count("\n") == 1 + 20 * STEPS  # every logged point of a few arms

    by_lr = timed(
        client, db, "/experiments/big/curves.json", group="algorithm.params.learning_rate"
    )
    groups = by_lr.json()["runs"]
    # the first 1,000 arms in the table's order (the one written by the API, last, is not)
    assert len(groups) == len(LRS) and groups[0]["name"].endswith("(100 arms)")
    assert all(
        lo <= y <= hi for g in groups for lo, y, hi in zip(g["low"], g["y"], g["high"], strict=True)
    )

    axes = timed(client, db, "/experiments/big/axes.json").json()
    assert len(axes["parallel"]["arms"]) == 1001
    heat = axes["heatmap"]
    assert (len(heat["x"]), len(heat["y"])) == (len(LRS), len(RANKS))
    assert all(c is not None and c["n"] == len(SEEDS) for row in heat["cells"] for c in row)

    ten = ",".join(arm_id(i, i, 0) for i in range(10))
    timed(client, db, "/compare", runs=ten)
    compared = timed(client, db, "/compare/curves.json", runs=ten).json()
    assert len(compared["runs"]) == 10
    allowed = BUDGET_S * margin()
    print(f"\n[{db}] answers (s), load {os.getloadavg()[0]:.1f} on {CORES} cores:")
    for label, elapsed in sorted(TIMINGS[db].items(), key=lambda kv: -kv[1]):
        print(f"  {elapsed:6.3f}  {label}")
    slow = {label: round(t, 2) for label, t in TIMINGS[db].items() if t > allowed}
    assert not slow, f"over {allowed:.1f} s: {slow}"


# ---- bad query parameters -----------------------------------------------------------------

DATA_PATHS = (
    "/experiments/big/arms.json",
    "/experiments/big/arms.csv",
    "/experiments/big/curves.json",
    "/experiments/big/curves.csv",
    "/experiments/big/axes.json",
)


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/experiments/big", {"page": "0"}, 400),
        ("/experiments/big", {"page": "two"}, 400),
        ("/experiments/big", {"page": "-1"}, 400),
        ("/experiments/big", {"per_page": "7"}, 400),
        ("/experiments/big", {"where": "no equals sign"}, 400),
        ("/experiments/big", {"q": "x" * 501}, 400),
        ("/experiments/big/live", {"page": "1e3"}, 400),
        ("/experiments/big/arms.json", {"page": "NaN"}, 400),
        ("/experiments/big/curves.json", {"metric": "no/such metric"}, 404),
        ("/experiments/big/curves.json", {"x": "wall"}, 400),
        ("/experiments/big/curves.json", {"points": "1"}, 400),
        ("/experiments/big/curves.json", {"limit": "1001"}, 400),
        ("/experiments/big/curves.csv", {"points": "all", "limit": "21"}, 400),
        ("/experiments/big/curves.json", {"group": "seed", "x": "time"}, 400),
        ("/experiments/big/axes.json", {"hx": "not.an.axis"}, 404),
        ("/experiments/big/axes.json", {"metric": "no/such metric"}, 404),
        ("/experiments/nope/arms.json", {}, 404),
        ("/compare/curves.json", {"runs": "arm-0-0-0,nope"}, 404),
        ("/compare/curves.json", {"runs": ""}, 400),
    ],
)
def test_a_bad_query_parameter_is_named_in_a_4xx(big, path, params, code) -> None:
    _, client, _ = big
    answer = client.get(path, params=params)
    assert answer.status_code == code, answer.text[:300]
    if path != "/experiments/big" and not path.endswith("/live"):
        assert next(iter(params), "experiment") in answer.json()["detail"] or code == 404


def test_any_query_string_answers_200_or_4xx_never_5xx(big) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, client, _ = big
    names = st.sampled_from(
        ["q", "status", "where", "sort", "order", "page", "per_page", "cols", "group"]
        + ["metric", "x", "points", "limit", "hx", "hy"]
    )
    text = st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),
        st.sampled_from(["0", "-1", "1e9", "all", "=", "a=b=c", "${oc.env:HOME}", HOSTILE]),
    )
    paths = st.sampled_from(["/experiments/big?per_page=25", *DATA_PATHS])

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(paths, st.lists(st.tuples(names, text), max_size=4))
    def check(path: str, params: list[tuple[str, str]]) -> None:
        if path.startswith("/experiments/big/curves"):
            params.append(("limit", "5"))  # the sweep's first arms keep each example quick
        answer = client.get(path, params=params)
        assert answer.status_code < 500, (path, params, answer.text[:300])
        if answer.status_code >= 400 and "json" in answer.headers["content-type"]:
            assert answer.json()["detail"]

    check()


# ---- in chromium -------------------------------------------------------------------------------


def test_in_chromium_the_charts_render_answer_a_hover_and_the_table_filters_pages_exports(
    big,
    browser,  # noqa: F811 - test_dashboard_ui's fixture
    shots,  # noqa: F811 - test_dashboard_ui's fixture
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    service, _, project = big
    if service.database != "sqlite":
        pytest.skip("the browser reads the same pages on SQLite; PostgreSQL is timed above")
    # Any breach of the Content-Security-Policy (an inline style or script, an eval) is recorded.
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        },
    )
    log_in(browser, service, project.key)
    browser.get(f"{service.url}/experiments/big")
    wait_for(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-rendered"), 30)
    wait_for(
        browser, lambda d: d.find_element(By.ID, "axes-views").get_attribute("data-rendered"), 30
    )
    loaded = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {response: n.responseEnd - n.startTime, load: n.loadEventEnd - n.startTime,"
        " charts: performance.now()};"
    )
    print(
        f"\n[chromium] page response {loaded['response']:.0f} ms, load {loaded['load']:.0f} ms,"
        f" charts drawn by {loaded['charts']:.0f} ms"
    )
    assert loaded["load"] <= 1000 * BUDGET_S * margin()
    assert loaded["charts"] <= 1000 * BUDGET_S * margin() * 2  # the page, then three fetches

    # Overlaid curves: a uPlot canvas with the first 100 arms; a hover names an arm and a value.
    assert browser.find_element(By.ID, "curves").get_attribute("data-rendered") == "100"
    assert browser.find_elements(By.CSS_SELECTOR, "#curves canvas")
    over = browser.find_element(By.CSS_SELECTOR, "#curves .u-over")
    ActionChains(browser).move_to_element_with_offset(over, 40, 20).perform()
    readout = browser.find_element(By.CSS_SELECTOR, "#curves [data-role=readout]")
    wait_for(browser, lambda d: " = " in readout.text)
    assert "step" in readout.text and readout.text.split(" = ")[1][0].isdigit()
    # Zoom: a drag narrows the x scale; smoothing, log scale and time redraw.
    full = browser.execute_script("return document.getElementById('curves').uplot.scales.x.max")
    ActionChains(browser).move_to_element_with_offset(
        over, -200, 0
    ).click_and_hold().move_by_offset(120, 0).release().perform()
    zoomed = browser.execute_script("return document.getElementById('curves').uplot.scales.x.max")
    assert zoomed < full
    browser.execute_script(
        "const s = document.querySelector('#curves [data-role=smooth]');"
        "s.value = '0.9'; s.dispatchEvent(new Event('input'));"
    )
    browser.find_element(By.CSS_SELECTOR, "#curves [data-role=log]").click()
    assert (
        browser.execute_script("return document.getElementById('curves').uplot.scales.y.distr") == 3
    )
    browser.find_element(By.CSS_SELECTOR, "#curves [data-role=x] option[value=time]").click()
    wait_for(
        browser,
        lambda d: (
            d.execute_script("return document.getElementById('curves').uplot.axes[0].label")
            == "time (s)"
        ),
    )
    screenshot(browser, shots / "thousand-arms-curves.png")

    # Parallel coordinates: a line an arm; the heat map: a cell per (lr, rank), hover names it.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#parallel polyline")) == 1001
    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap rect.hm-cell")
    assert len(cells) == len(LRS) * len(RANKS)
    ActionChains(browser).move_to_element(cells[0]).perform()
    heat = browser.find_element(By.CSS_SELECTOR, "[data-role=heatmap-readout]").text
    assert "eval/exact_match" in heat and "(10 arms)" in heat
    assert browser.execute_script("return window.__xss") is None
    # More arms overlaid: the first thousand in the table's order.
    browser.find_element(By.CSS_SELECTOR, "#curves [data-role=limit] option[value='1000']").click()
    rendered = 'return document.getElementById("curves").dataset.rendered'
    wait_for(browser, lambda d: d.execute_script(rendered) == "1000", 30)
    assert browser.execute_script("return window.__csp") == []

    # Filter and group through the form, then page and export what matches.
    box = browser.find_element(By.CSS_SELECTOR, "#filters input[name=where]")
    box.send_keys("algorithm.params.lora_rank=16")
    group = browser.find_element(By.CSS_SELECTOR, "#filters input[name=group]")
    group.send_keys("algorithm.params.learning_rate")
    browser.find_element(By.ID, "apply-filters").click()
    wait_for(browser, lambda d: "where=" in d.current_url)
    assert "100 of 1001 match" in browser.find_element(By.ID, "arms-summary").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#groups tbody tr")) == len(LRS)
    # the curves follow: a mean a learning rate, its std dashed beside it
    wait_for(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-rendered"), 30)
    assert browser.find_element(By.ID, "curves").get_attribute("data-rendered") == str(len(LRS))
    lines = browser.execute_script("return document.getElementById('curves').uplot.series.length")
    assert lines == 1 + 3 * len(LRS)
    browser.find_element(By.ID, "page-next").click()
    wait_for(browser, lambda d: "page=2" in d.current_url)
    assert browser.find_element(By.ID, "page-of").text == "page 2 of 2"
    csv_text = browser.execute_script(
        "return fetch(document.getElementById('export-csv').href).then(r => r.text())"
    )
    assert len(list(csv.reader(io.StringIO(csv_text)))) == 1 + 100
    screenshot(browser, shots / "thousand-arms-filtered.png")

    # The column picker: only the success metric beside name and status.
    browser.get(f"{service.url}/experiments/big?cols=status&cols=metric:{METRIC}")
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#arms thead th")]
    assert headers[1:] == ["arm", "status", f"{METRIC} ▼"]

    # The compare view overlays the ticked arms' curves.
    browser.get(f"{service.url}/compare?runs=arm-0-0-0,arm-9-9-9")
    wait_for(
        browser, lambda d: d.find_element(By.ID, "compare-curves").get_attribute("data-rendered")
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#compare-curves canvas")
    assert browser.execute_script("return window.__csp") == []
    # and the probe does see a breach: markup with an inline style is refused
    browser.execute_script(
        "document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')"
    )
    wait_for(browser, lambda d: d.execute_script("return window.__csp.length") > 0)
