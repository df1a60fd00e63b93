"""The dashboard's web UI: its pages over HTTP, then in a real browser.

The browser is Debian's chromium driven by Selenium through /usr/bin/chromedriver (never a
driver Selenium Manager would download). Without chromium the browser tests skip; a run with
``EVSYS_REQUIRE_BROWSER=1`` (``scripts/test`` as root on Debian) fails instead. The service is
the real app under uvicorn on 127.0.0.1, filled through its HTTP writes API as a sweep fills it.
Screenshots go to ``$EVSYS_UI_SCREENSHOTS`` when set, else to a temporary directory.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import require, unavailable

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from evsys.dashboard.app import create_app  # noqa: E402
from evsys.dashboard.auth import create_key, revoke_key  # noqa: E402
from evsys.tracking.wire import API_PREFIX  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
HOSTILE = """<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">"""


# ---- what a sweep writes ----------------------------------------------------------------------


def write(op: str, **data: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "op": op, "data": data, "time": time.time()}


def arm_writes(experiment_id: str, run_id: str, lr: float, rank: int, score: float) -> list[dict]:
    """One arm as the dashboard log store records it: created, a loss curve, eval, predictions."""
    overrides = [f"algorithm.params.learning_rate={lr}", f"algorithm.params.lora_rank={rank}"]
    config = {
        "name": "sft-mock",
        "seed": 7,
        "algorithm": {"kind": "sft", "params": {"learning_rate": lr, "lora_rank": rank}},
        "backend": {"kind": "mock", "params": {}},
        "metadata": {"success_metric": "eval/exact_match"},
    }
    steps = [{"step": s, "metrics": {"train/loss": 2.0 / (1 + s * lr * 2e3)}} for s in range(40)]
    rows = [
        {"prompt": f"pick a tool for task {i}", "completion": "search", "expected": "search"}
        | {"passed": i % 3 != 0, "score": float(i % 3 != 0)}
        for i in range(6)
    ]
    return [
        write(
            "run.create",
            id=run_id,
            experiment_id=experiment_id,
            name=f"lr={lr},rank={rank}",
            status="running",
            config=config,
            config_hash=f"hash-{run_id}",
            overrides=overrides,
            seed=7,
            git={"commit": "3f2a9c1d7b6e5a4f", "diff": False},
        ),
        write("run.steps", run_id=run_id, steps=steps),
        write(
            "eval_run.create", id=f"{run_id}-eval", run_id=run_id, metrics={"exact_match": score}
        ),
        write("predictions.add", id=f"{run_id}-pred", run_id=run_id, rows=rows),
        write(
            "run.update",
            id=run_id,
            status="completed",
            summary={"eval/exact_match": score, "train/loss": steps[-1]["metrics"]["train/loss"]},
        ),
    ]


ARMS = {  # run id → (learning rate, LoRA rank, eval/exact_match)
    "arm-a": (1e-5, 8, 0.55),
    "arm-b": (1e-4, 8, 0.80),
    "arm-c": (1e-3, 8, 0.65),
    "arm-d": (1e-4, 32, 0.70),
}


def sweep_writes(experiment_id: str, parent_id: str) -> list[dict]:
    """A finished learning-rate × rank sweep, a child experiment of ``parent_id``."""
    writes = [
        write("experiment.create", id=parent_id, name="sft baseline", status="completed"),
        write(
            "experiment.create",
            id=experiment_id,
            name="lora lr sweep",
            hypothesis="A learning rate of 1e-4 beats 1e-5 on exact match.",
            success_metric="eval/exact_match",
            direction="maximize",
            tags=["lora", "sft"],
            parent_experiment_id=parent_id,
            sweep_plan={"algorithm.params.learning_rate": [1e-5, 1e-4, 1e-3]},
            status="running",
        ),
    ]
    for run_id, (lr, rank, score) in ARMS.items():
        writes += arm_writes(experiment_id, run_id, lr, rank, score)
    writes.append(
        write(
            "experiment.update",
            id=experiment_id,
            status="completed",
            best_run_id="arm-b",
            best_score=0.80,
            conclusion="1e-4 wins: +0.25 exact match over 1e-5; rank 32 does not help.",
        )
    )
    return writes


# ---- the service ------------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    key: str
    other_key: str
    """A key of another project."""

    def post_writes(self, writes: list[dict], key: str | None = None) -> dict:
        body = json.dumps({"writes": writes}).encode()
        request = urllib.request.Request(
            f"{self.url}{API_PREFIX}/sdk/writes",
            data=body,
            headers={
                "Authorization": f"Bearer {key or self.key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    import uvicorn

    root = tmp_path_factory.mktemp("dashboard")
    app = create_app(str(root / "dashboard.db"), root / "files")
    with app.state.sessions() as db:
        key, _, _ = create_key(db, "vision")
        other_key, _, _ = create_key(db, "elsewhere")
        db.commit()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    service = Service(f"http://127.0.0.1:{port}", key, other_key)
    service.post_writes(sweep_writes("sweep-1", "baseline-1"))
    yield service
    server.should_exit = True
    thread.join(timeout=10)


# ---- the pages over HTTP (no browser) ---------------------------------------------------------


@pytest.fixture(scope="module")
def http(service: Service) -> Iterator[Any]:
    """An HTTP client of the running service that keeps cookies, logged in with the key."""
    import httpx

    with httpx.Client(base_url=service.url, follow_redirects=False, timeout=10) as client:
        answer = client.post("/login", data={"api_key": service.key, "next": "/"})
        assert answer.status_code == 303
        yield client


def test_a_page_without_a_session_sends_to_login_and_a_fragment_answers_401(service) -> None:
    import httpx

    with httpx.Client(base_url=service.url, timeout=10) as anonymous:
        answer = anonymous.get("/experiments/sweep-1?sort=name")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fexperiments%2Fsweep-1%3Fsort%3Dname"
        assert anonymous.get("/experiments/sweep-1/live").status_code == 401
    forged = {"evsys_session": "eyJrIjogIjEiLCAicCI6ICJ4IiwgImUiOiA5OTk5OTk5OTk5fQ.AAAA"}
    with httpx.Client(base_url=service.url, cookies=forged, timeout=10) as forger:
        assert forger.get("/").status_code == 303


def test_login_goes_back_only_to_a_page_of_this_site(service) -> None:
    import httpx

    with httpx.Client(base_url=service.url, timeout=10) as client:
        for target, expected in [("/runs/arm-a", "/runs/arm-a"), ("//evil.example/", "/")]:
            answer = client.post("/login", data={"api_key": service.key, "next": target})
            assert answer.headers["location"] == expected
        answer = client.post("/login", data={"api_key": "evsys_not-a-key"})
        assert answer.status_code == 401 and "not valid" in answer.text
        assert "evsys_session" not in answer.headers.get("set-cookie", "")


def test_pages_carry_a_policy_that_runs_only_the_packaged_script(http) -> None:
    answer = http.get("/experiments/sweep-1")
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert http.get("/static/dashboard.js").status_code == 200


def test_a_key_sees_only_its_own_project(service, http) -> None:
    import httpx

    with httpx.Client(base_url=service.url, timeout=10) as other:
        other.post("/login", data={"api_key": service.other_key})
        assert other.get("/experiments/sweep-1").status_code == 404
        assert other.get("/runs/arm-a").status_code == 404
        assert other.get("/compare?runs=arm-a,arm-b").status_code == 404
        assert "lora lr sweep" not in other.get("/").text
    assert "lora lr sweep" in http.get("/").text


def test_a_revoked_key_ends_its_sessions(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(str(tmp_path / "dashboard.db"), tmp_path / "files")
    with app.state.sessions() as db:
        key, row, _ = create_key(db, "short-lived")
        db.commit()
    with TestClient(app, follow_redirects=False) as client:
        assert client.post("/login", data={"api_key": key}).status_code == 303
        assert client.get("/").status_code == 200
        with app.state.sessions() as db:
            revoke_key(db, row.prefix)
            db.commit()
        assert client.get("/").status_code == 303


def test_experiments_filter_by_tag_and_status(http) -> None:
    assert "lora lr sweep" in http.get("/?tag=lora").text
    assert "lora lr sweep" not in http.get("/?tag=rl").text
    assert "lora lr sweep" in http.get("/?status=completed").text
    assert "lora lr sweep" not in http.get("/?status=failed").text


def test_datasets_list_every_version_of_a_name(service, http) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {service.key}"}
    for content in (b'{"prompt": "a"}\n', b'{"prompt": "b"}\n'):
        files = {"file": ("rows.jsonl", content, "application/x-ndjson")}
        answer = httpx.post(
            f"{service.url}{API_PREFIX}/datasets", data={"name": "tools"}, files=files, headers=auth
        )
        assert answer.status_code == 200, answer.text
    page = http.get("/datasets").text
    assert "tools" in page and "v2" in page and "v1" in page
    assert "No benchmarks uploaded yet" in http.get("/benchmarks").text


def test_odd_but_valid_records_render(service, http) -> None:
    """Whatever the writes API accepts, every page shows: NaN and infinite metrics, a git object
    of any shape, a run that arrived before its experiment, a parent that is not there."""
    nan, inf = float("nan"), float("inf")
    service.post_writes(
        [
            write(
                "run.create",
                id="odd-run",
                experiment_id="odd-1",
                name="odd arm",
                git={"commit": 12345, "diff": {"files": 2}},
                config={"a": [1, {"b": None}], "big": 1e300, "empty": {}},
                overrides=["=", "no-equals", "a=1=2"],
            ),
            write("run.steps", run_id="odd-run", steps=[{"step": 0, "metrics": {"loss": nan}}]),
            write("run.update", id="odd-run", summary={"m": nan, "n": inf, "k": 3}),
            write("eval_run.create", id="odd-eval", run_id="odd-run", metrics={"m": inf}),
            write(
                "predictions.add",
                id="odd-pred",
                run_id="odd-run",
                rows=[{"prompt": "", "completion": "", "expected": {"nested": [1, None]}}],
            ),
        ]
    )
    assert http.get("/runs/odd-run").status_code == 200  # its experiment is not there yet
    service.post_writes(
        [
            write(
                "experiment.create",
                id="odd-1",
                name="odd",
                success_metric="m",
                direction="minimize",
                parent_experiment_id="gone",
            )
        ]
    )
    for page in ("/", "/experiments/odd-1", "/experiments/odd-1?sort=metric:n&order=asc"):
        assert http.get(page).status_code == 200, page
    assert http.get("/compare?runs=odd-run,arm-a").status_code == 200
    assert http.get("/experiments/odd-1/live?sort=axis:a&order=desc").status_code == 200


def test_generations_and_parent_runs_link_an_evolved_arm_to_where_it_came_from(
    service, http
) -> None:
    service.post_writes(
        [
            write(
                "experiment.create", id="evo-1", name="evolved", success_metric="eval/exact_match"
            ),
            write(
                "generation.create", id="gen-0", experiment_id="evo-1", index=0, proposer="optuna"
            ),
            write("generation.create", id="gen-1", experiment_id="evo-1", index=1, proposer="llm"),
            *arm_writes("evo-1", "evo-a", 1e-5, 8, 0.5),
            write(
                "run.create",
                id="evo-b",
                experiment_id="evo-1",
                name="child of a",
                generation_id="gen-1",
                parent_run_ids=["evo-a"],
            ),
            write("generation.update", id="gen-1", best_run_id="evo-b", best_score=0.7),
        ]
    )
    page = http.get("/experiments/evo-1").text
    assert 'id="generations"' in page and "optuna" in page and "llm" in page
    assert '<a href="/runs/evo-b">child of a</a>' in page
    run_page = http.get("/runs/evo-b").text
    assert "generation 1" in run_page
    assert '<a href="/runs/evo-a">lr=1e-05,rank=8</a>' in run_page


def test_compare_asks_for_two_runs_at_least(http) -> None:
    answer = http.get("/compare?runs=arm-a")
    assert answer.status_code == 400 and "Pick 2" in answer.text
    assert http.get("/compare?runs=arm-a,no-such-run").status_code == 404


def test_compare_answers_any_set_of_runs_never_a_5xx(service, http) -> None:
    """Runs with overlapping and disjoint metrics and config keys, in any order: a metric only a
    later run has (a third run's, not the first's nor the second's) once answered 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = st.sampled_from(["loss", "eval/acc", "only/c", "x"])
    numbers = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**53), 2**53)
    )
    one_run = st.tuples(
        st.dictionaries(names, numbers, max_size=4),
        st.dictionaries(st.sampled_from(["lr", "rank", "model"]), numbers, max_size=3),
    )

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(runs=st.lists(one_run, min_size=2, max_size=6))
    def check(runs: list[tuple[dict, dict]]) -> None:
        ids = [uuid.uuid4().hex for _ in runs]
        writes = []
        for run_id, (summary, config) in zip(ids, runs, strict=True):
            writes.append(write("run.create", id=run_id, experiment_id="cmp", name=run_id[:6]))
            writes.append(write("run.update", id=run_id, summary=summary, config=config))
        service.post_writes(writes)
        answer = http.get(f"/compare?runs={','.join(ids)}")
        assert answer.status_code == 200, answer.text[-500:]
        for name in {name for summary, _ in runs for name in summary}:
            assert f"<td>{name}</td>" in answer.text

    check()


def test_a_run_page_names_where_a_curve_was_nan_or_infinite(service, http) -> None:
    steps = [
        {"step": s, "metrics": {"loss": v}} for s, v in enumerate([1.0, "NaN", 0.5, "-Infinity"])
    ]
    service.post_writes(
        [
            write("run.create", id="nan-run", experiment_id="nan-exp", name="diverged"),
            write("run.steps", run_id="nan-run", steps=steps),
        ]
    )
    page = http.get("/runs/nan-run")
    assert page.status_code == 200
    assert "NaN at step 1; -Infinity at step 3" in page.text


# ---- in the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless chromium for the module, with a fresh profile."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        unavailable(
            f"needs {' and '.join(missing)}: apt-get install chromium chromium-driver",
            declared_by="EVSYS_REQUIRE_BROWSER",
        )
    webdriver = require(
        "selenium.webdriver", "pip install selenium", declared_by="EVSYS_REQUIRE_BROWSER"
    )
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path: Selenium Manager is never asked to find or download one.
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("EVSYS_UI_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        return Path(where)
    return tmp_path_factory.mktemp("screenshots")


def screenshot(driver: Any, path: Path) -> None:
    """The whole page, not just the window (chromium's DevTools capture beyond the viewport)."""
    import base64

    height = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(height, 4000), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def wait_for(driver: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def log_in(driver: Any, service: Service, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{service.url}/login")
    driver.find_element(By.NAME, "api_key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: "/login" not in d.current_url)


def texts(driver: Any, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def test_login_refuses_a_bad_key_and_a_good_one_opens_an_httponly_samesite_session(
    browser, service, shots
) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{service.url}/experiments/sweep-1")
    wait_for(browser, lambda d: "/login" in d.current_url)
    browser.find_element(By.NAME, "api_key").send_keys("evsys_wrong")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    error = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]"))
    assert "not valid" in error.text
    assert browser.get_cookie("evsys_session") is None
    screenshot(browser, shots / "login-refused.png")

    browser.find_element(By.NAME, "api_key").send_keys(service.key)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(
        browser, lambda d: d.current_url.endswith("/experiments/sweep-1")
    )  # where it was going
    cookie = browser.get_cookie("evsys_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert service.key not in cookie["value"]
    assert "evsys_session" not in browser.execute_script("return document.cookie")


def test_a_sweeps_experiment_page_shows_its_arms_best_arm_and_conclusion(
    browser, service, shots
) -> None:
    from selenium.webdriver.common.by import By

    log_in(browser, service, service.key)
    browser.get(f"{service.url}/experiments/sweep-1")
    assert browser.find_element(By.ID, "hypothesis").text.startswith("A learning rate of 1e-4")
    # Best first by the success metric; the recorded best arm is marked.
    assert texts(browser, "#arms tbody td:nth-child(2) a") == [
        "lr=0.0001,rank=8",
        "lr=0.0001,rank=32",
        "lr=0.001,rank=8",
        "lr=1e-05,rank=8",
    ]
    assert texts(browser, "#arms tr.best td:nth-child(2) a") == ["lr=0.0001,rank=8"]
    assert browser.find_element(By.ID, "best-arm").text == "lr=0.0001,rank=8"
    assert "rank 32 does not help" in browser.find_element(By.ID, "conclusion").text
    headers = texts(browser, "#arms thead th")
    assert "algorithm.params.learning_rate" in headers and "algorithm.params.lora_rank" in headers
    # One chart per swept axis, one dot per arm; lineage links the parent experiment.
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart circle.dot")) == 2 * len(ARMS)
    assert texts(browser, "#lineage a") == ["sft baseline"]
    screenshot(browser, shots / "experiment.png")

    browser.find_element(By.LINK_TEXT, "arm").click()  # sort by name, then the other way
    wait_for(browser, lambda d: "sort=name" in d.current_url)
    assert texts(browser, "#arms tbody td:nth-child(2) a")[0] == "lr=0.0001,rank=32"


def test_a_running_sweeps_page_shows_a_new_arm_without_a_reload(browser, service) -> None:
    from selenium.webdriver.common.by import By

    service.post_writes(
        [
            write(
                "experiment.create",
                id="live-1",
                name="live sweep",
                success_metric="eval/exact_match",
            )
        ]
        + arm_writes("live-1", "live-a", 1e-5, 8, 0.4)
    )
    log_in(browser, service, service.key)
    browser.get(f"{service.url}/experiments/live-1")
    browser.execute_script("window.__samePage = true")
    assert texts(browser, "#arms tbody td:nth-child(2) a") == ["lr=1e-05,rank=8"]

    service.post_writes(arm_writes("live-1", "live-b", 1e-4, 8, 0.9))
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#arms tbody tr")) == 2)
    assert texts(browser, "#arms tbody td:nth-child(2) a") == [
        "lr=0.0001,rank=8",
        "lr=1e-05,rank=8",
    ]
    assert browser.execute_script("return window.__samePage") is True  # the same document

    service.post_writes([write("experiment.update", id="live-1", conclusion="more is better")])
    wait_for(browser, lambda d: d.find_elements(By.ID, "conclusion"))
    assert browser.find_element(By.ID, "conclusion").text == "more is better"


def test_a_script_in_user_text_shows_as_text_and_never_runs(browser, service, shots) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    service.post_writes(
        [
            write(
                "experiment.create",
                id="xss-1",
                name=f"name {HOSTILE}",
                hypothesis=HOSTILE,
                tags=[HOSTILE],
                success_metric="eval/exact_match",
            ),
            write(
                "run.create",
                id="xss-run",
                experiment_id="xss-1",
                name=HOSTILE,
                config={"note": HOSTILE},
                overrides=[f"note={HOSTILE}"],
            ),
            write(
                "predictions.add",
                id="xss-pred",
                run_id="xss-run",
                rows=[
                    {"prompt": HOSTILE, "completion": HOSTILE, "expected": HOSTILE, "passed": False}
                ],
            ),
            write(
                "run.update",
                id="xss-run",
                status="failed",
                error=HOSTILE,
                summary={"eval/exact_match": 0.1},
            ),
            write("experiment.update", id="xss-1", conclusion=HOSTILE),
        ]
    )
    log_in(browser, service, service.key)
    for page in ("/", "/experiments/xss-1", "/runs/xss-run", "/compare?runs=xss-run,arm-a"):
        browser.get(f"{service.url}{page}")
        with pytest.raises(TimeoutException):
            wait_for(browser, expected_conditions.alert_is_present(), timeout=0.3)
        assert browser.execute_script("return window.__xss") is None, page
        assert browser.find_elements(By.CSS_SELECTOR, "img") == [], page
        scripts = browser.find_elements(By.CSS_SELECTOR, "script")  # the packaged ones only
        assert scripts and all(
            s.get_attribute("src").startswith(f"{service.url}/static/")
            and not s.get_attribute("innerHTML").strip()
            for s in scripts
        ), page
        assert HOSTILE in browser.find_element(By.TAG_NAME, "main").text, page
    browser.get(f"{service.url}/experiments/xss-1")
    # The charts drew the hostile name and config value (as text) and ran nothing.
    wait_for(browser, lambda d: d.find_element(By.ID, "axes-views").get_attribute("data-rendered"))
    titles = browser.execute_script(
        "return [...document.querySelectorAll('#parallel title')].map(t => t.textContent)"
    )
    assert any(HOSTILE in t for t in titles)
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_element(By.ID, "hypothesis").text == HOSTILE
    assert browser.find_element(By.ID, "conclusion").text == HOSTILE
    screenshot(browser, shots / "hostile-text.png")


def test_compare_shows_the_config_differences_and_metric_deltas_of_ticked_arms(
    browser, service, shots
) -> None:
    from selenium.webdriver.common.by import By

    log_in(browser, service, service.key)
    browser.get(f"{service.url}/experiments/sweep-1?sort=metric:eval/exact_match&order=asc")
    for run_id in ("arm-a", "arm-b", "arm-d"):
        browser.find_element(By.CSS_SELECTOR, f"input[name=run][value={run_id}]").click()
    browser.find_element(By.CSS_SELECTOR, ".compare-form button").click()
    wait_for(browser, lambda d: "/compare" in d.current_url)
    assert texts(browser, "#compared-runs tbody td:first-of-type a") == [
        "lr=1e-05,rank=8",
        "lr=0.0001,rank=32",
        "lr=0.0001,rank=8",
    ]  # in the table's order
    rows = {r[0]: r[1:] for r in (row.split() for row in texts(browser, "#config-diff tbody tr"))}
    assert rows == {
        "algorithm.params.learning_rate": ["1e-05", "0.0001", "0.0001"],
        "algorithm.params.lora_rank": ["8", "32", "8"],
    }
    exact = next(r for r in texts(browser, "#metric-deltas tbody tr") if r.startswith("eval/"))
    assert exact.split() == ["eval/exact_match", "0.55", "0.7", "+0.15", "0.8", "+0.25"]
    screenshot(browser, shots / "compare.png")
    browser.find_element(By.LINK_TEXT, "lr=0.0001,rank=8").click()  # on to a run's page
    wait_for(browser, lambda d: d.current_url.endswith("/runs/arm-b"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart polyline.curve")) == 1
    assert texts(browser, "#predictions .badge") == ["fail", "pass", "pass", "fail", "pass", "pass"]
    assert "learning_rate: 0.0001" in browser.find_element(By.ID, "config").text
    screenshot(browser, shots / "run.png")
