"""Rollout rewards are asked for side by side: ``evsys.fan_out.map_in_order`` and the judge
calls of local RL's reward function, against a judge test server whose every answer takes a
while."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai_server import FakeChatServer
from vendor_policies import rubric_judge

from evsys.backends.local.rl import verifier_reward
from evsys.config import VerifierSpec
from evsys.data.types import from_dict, task_row
from evsys.fan_out import map_in_order
from evsys.task_verifiers import rollout_verifier


class Boom(Exception):
    pass


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(-50, 50), max_size=20),
    max_in_flight=st.integers(1, 9),
    fail_on=st.sets(st.integers(-50, 50), max_size=3),
)
def test_map_in_order_is_the_loop_it_replaces(
    items: list[int], max_in_flight: int, fail_on: set[int]
) -> None:
    """Same results in the same order; on failure, the loop's first failure is raised."""

    def fn(x: int) -> int:
        time.sleep(0.0005 * (x % 3))  # finish out of order
        if x in fail_on:
            raise Boom(x)
        return x * x

    failing = [x for x in items if x in fail_on]
    if failing:
        with pytest.raises(Boom) as raised:
            map_in_order(fn, items, max_in_flight)
        assert raised.value.args == (failing[0],)
    else:
        assert map_in_order(fn, items, max_in_flight) == [x * x for x in items]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 24), max_in_flight=st.integers(1, 6))
def test_map_in_order_never_runs_more_than_its_bound(n: int, max_in_flight: int) -> None:
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def fn(x: int) -> int:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.002)
        with lock:
            state["now"] -= 1
        return x

    assert map_in_order(fn, range(n), max_in_flight) == list(range(n))
    assert state["most"] <= max_in_flight


def judge_spec(server: FakeChatServer, rubric: str) -> VerifierSpec:
    judge = {
        "kind": "openai_compatible",
        "params": {"base_url": server.base_url, "api_key_env": None},
    }
    return VerifierSpec(
        kind="llm_judge", params={"judge": judge, "judge_model": "judge-1", "rubric": rubric}
    )


def test_local_rl_asks_the_judge_about_a_batch_at_once_and_keeps_the_order() -> None:
    """8 completions against a judge that takes 0.4 s an answer: about one answer's wait, not
    eight (a generous bound: serial calls take ≥ 3.2 s), every score where its completion is."""
    delay, n = 0.4, 8
    rows: list[dict[str, Any]] = [{"id": "q", "prompt": "What is 40 + 2?", "answer": "42"}]
    completions = [[{"role": "assistant", "content": "42" if i % 2 else "41"}] for i in range(n)]
    with FakeChatServer(policy=rubric_judge, delay_s=delay) as server:
        verifier = rollout_verifier(judge_spec(server, "contains: 42"))
        reward = verifier_reward(verifier, rows, name="llm_judge")
        start = time.perf_counter()
        scores = reward(completions=completions, row_index=[0] * n)
        elapsed = time.perf_counter() - start
    assert scores == [float(i % 2) for i in range(n)]
    assert server.max_in_flight >= 4, server.max_in_flight
    assert elapsed < n * delay / 2, elapsed
    assert len(verifier.judge_calls()) == n  # every call metered once


def test_a_judge_failure_stays_with_its_own_completion(caplog: pytest.LogCaptureFixture) -> None:
    """A harbor row whose rubric the judge cannot score gets 0 (logged); the rows around it keep
    their own scores."""
    unscorable = task_row(
        from_dict(
            {
                "task_id": "polite",
                "instruction": "Say hello.",
                "verifier": {"kind": "llm_judge", "judge_model": "judge-1", "rubric": "Polite?"},
            }
        )
    )
    rows = [{"id": "q", "prompt": "What is 40 + 2?", "answer": "42"}, unscorable]
    completions = ["42", "hello", "42", "41"]
    with FakeChatServer(policy=rubric_judge, delay_s=0.05) as server:
        reward = verifier_reward(
            rollout_verifier(judge_spec(server, "contains: 42")), rows, name="llm_judge"
        )
        scores = reward(completions=completions, row_index=[0, 1, 0, 0])
    assert scores == [1.0, 0.0, 1.0, 0.0]
    assert "task 'polite'" in caplog.text and "scored 0" in caplog.text
