"""Metrics, verifiers and the answer helpers they share, on hand-checked values."""

from __future__ import annotations

from math import comb

import pytest

from evsys.answers import extract_answer, is_correct, normalize, target_answer
from evsys.errors import DataError
from evsys.metrics import pass_at_k_estimate
from evsys.protocols import Metric, VerificationResult, Verifier
from evsys.registry import METRICS, VERIFIERS
from evsys.verifiers import register_verifier_fn


@pytest.fixture
def clean_verifiers():
    """Restore the verifier registry after a test registers throw-away entries."""
    VERIFIERS.names()  # load the built-ins first, so the snapshot holds them
    state = VERIFIERS.snapshot()
    yield VERIFIERS
    VERIFIERS.restore(state)


def metric(name, **params):
    return METRICS.build(name, params)


def verify(name, completion, target, **params):
    return VERIFIERS.build(name, params).verify(prompt="q", completion=completion, target=target)


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer> Paris </answer>", "Paris"),
        ("I think <answer>Lyon</answer>, no: <answer>Paris</answer>.", "Paris"),  # last wins
        ("<answer>\nline one\nline two\n</answer>", "line one\nline two"),  # spans lines
        ("  no tags at all \n", "no tags at all"),
        ("<answer></answer>", ""),
        ("<answer>unclosed", "<answer>unclosed"),  # not well formed: the whole text
        ("", ""),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Paris ", "paris"),
        ('"Paris."', "paris"),
        ('"Paris".', "paris"),
        ("'New   York\n City'", "new york city"),
        ("\u201cStraße\u201d", "strasse"),  # curly quotes; casefold, not lower
        ("3.14", "3.14"),  # only a trailing period goes
        ('"unbalanced', '"unbalanced'),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_normalize_can_keep_case():
    assert normalize(" 'Paris.' ", casefold=False) == "Paris"


def test_target_answer_shapes():
    assert target_answer("Paris") == "Paris"
    assert target_answer(42) == "42"
    assert target_answer({"answer": "GMAIL_SEND_EMAIL", "toolkit": "gmail"}) == "GMAIL_SEND_EMAIL"
    with pytest.raises(DataError, match="no 'answer' key"):
        target_answer({"toolkit": "gmail"})
    with pytest.raises(DataError, match="None"):
        target_answer(None)


def test_is_correct():
    assert is_correct("so <answer>'paris'.</answer>", {"answer": "Paris"})
    assert not is_correct("<answer>Lyon</answer>", "Paris")
    assert not is_correct(None, "Paris")


# -- metrics ----------------------------------------------------------------------------------


def test_registry_lists_the_builtin_metrics_and_verifiers():
    assert {"exact_match", "pass_at_k", "mean_reward", "toolkit_match"} <= set(METRICS.names())
    assert {"format_only", "exact_match", "contains"} <= set(VERIFIERS.names())
    assert all(isinstance(METRICS.build(name), Metric) for name in METRICS.names())


def test_exact_match():
    predictions = ["<answer>Paris</answer>", "paris.", "<answer>Lyon</answer>", "Rome"]
    targets = ["Paris", {"answer": "Paris"}, "Paris", {"answer": "rome", "aliases": ["Roma"]}]
    assert metric("exact_match").compute(predictions=predictions, targets=targets) == 0.75


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),
        (5, 2, 3, 1 - comb(3, 3) / comb(5, 3)),  # = 0.9
        (5, 0, 2, 0.0),
        (5, 4, 2, 1.0),  # n - c < k: every pair holds a correct sample
        (10, 3, 5, 1 - comb(7, 5) / comb(10, 5)),
    ],
)
def test_pass_at_k_estimate(n, c, k, expected):
    assert pass_at_k_estimate(n, c, k) == pytest.approx(expected)


def test_pass_at_k_estimate_hand_values():
    assert pass_at_k_estimate(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k_estimate(5, 2, 3) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="n=2"):
        pass_at_k_estimate(2, 1, 3)


def test_pass_at_k_metric():
    right, wrong = "<answer>4</answer>", "<answer>5</answer>"
    predictions = [[right, right, wrong, wrong, wrong], [wrong] * 5]
    targets = ["4", {"answer": "4"}]
    assert metric("pass_at_k", k=1).compute(predictions=predictions, targets=targets) == (
        pytest.approx((0.4 + 0.0) / 2)
    )
    assert metric("pass_at_k", k=3).compute(predictions=predictions, targets=targets) == (
        pytest.approx((0.9 + 0.0) / 2)
    )


def test_pass_at_k_errors():
    with pytest.raises(ValueError, match=r"row 1 has n=2 samples, fewer than k=3"):
        metric("pass_at_k", k=3).compute(predictions=[["a"] * 3, ["a"] * 2], targets=["a", "a"])
    with pytest.raises(TypeError, match="list of sampled completions"):
        metric("pass_at_k").compute(predictions=["a"], targets=["a"])
    with pytest.raises(ValueError, match="k"):
        metric("pass_at_k", k=0)


def test_mean_reward_ignores_targets():
    assert metric("mean_reward").compute(predictions=[1.0, 0, True, 0.5], targets=[]) == 0.625
    with pytest.raises(TypeError, match="row 1"):
        metric("mean_reward").compute(predictions=[1.0, "x"], targets=[None, None])


def test_toolkit_match():
    predictions = ["<answer>GMAIL_SEND_EMAIL</answer>", "SLACK_POST", "github-create-issue", None]
    targets = [{"toolkit": "Gmail"}, {"toolkit": "gmail"}, {"toolkit": "github"}, {"toolkit": "x"}]
    assert metric("toolkit_match").compute(predictions=predictions, targets=targets) == 0.25
    dashed = metric("toolkit_match", separator="-")
    assert dashed.compute(predictions=predictions[2:3], targets=targets[2:3]) == 1.0
    with pytest.raises(DataError, match="row 0"):
        metric("toolkit_match").compute(predictions=["A_B"], targets=["a"])


@pytest.mark.parametrize("name", ["exact_match", "pass_at_k", "toolkit_match"])
def test_metrics_refuse_mismatched_or_empty_rows(name):
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        metric(name).compute(predictions=[["a"], ["b"]], targets=[{"toolkit": "a"}])
    with pytest.raises(ValueError, match="no rows to score"):
        metric(name).compute(predictions=[], targets=[])


def test_mean_reward_refuses_empty():
    with pytest.raises(ValueError, match="no rows to score"):
        metric("mean_reward").compute(predictions=[], targets=[])


def test_metric_params_are_validated():
    with pytest.raises(ValueError, match="extra"):
        metric("exact_match", strict=True)


# -- verifiers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("thinking… <answer>42</answer>", 1.0),
        ("<answer>\n  multi\n line </answer>", 1.0),
        ("<answer>   </answer>", 0.0),
        ("<answer>42", 0.0),
        ("42", 0.0),
    ],
)
def test_format_only(completion, reward):
    result = verify("format_only", completion, target=None)
    assert isinstance(result, VerificationResult) and result.reward == reward


def test_format_only_info():
    assert verify("format_only", "<answer> 42 </answer>", None).info == {
        "has_answer_tag": True,
        "extracted": "42",
    }
    assert verify("format_only", "42", None).info == {"has_answer_tag": False, "extracted": None}


def test_exact_match_verifier():
    result = verify("exact_match", "so <answer>Paris.</answer>", {"answer": "paris"})
    assert result.reward == 1.0
    assert result.info == {"extracted": "Paris.", "expected": "paris"}
    assert verify("exact_match", "<answer>Lyon</answer>", "Paris").reward == 0.0
    assert isinstance(VERIFIERS.build("exact_match"), Verifier)


def test_contains_verifier():
    completion = "The capital is   Paris, of course."
    assert verify("contains", completion, "paris").reward == 1.0
    assert verify("contains", completion, {"answer": "'Capital is Paris'"}).reward == 1.0
    assert verify("contains", completion, "paris", case_sensitive=True).reward == 0.0
    assert verify("contains", completion, "Paris", case_sensitive=True).reward == 1.0
    assert verify("contains", completion, "Lyon").reward == 0.0
    assert verify("contains", completion, "").reward == 0.0  # an empty answer matches nothing
    with pytest.raises(ValueError, match="case_sensitiv"):
        VERIFIERS.build("contains", {"case_sensitiv": True})


def test_register_verifier_fn(clean_verifiers):
    @register_verifier_fn("test_prefix")
    def starts_with(completion, expected, prefix=""):
        """Reward a completion that starts with ``prefix`` + the expected text."""
        return completion.startswith(prefix + expected)

    assert starts_with("ab", "b", prefix="a") is True  # the function itself is unchanged
    assert "test_prefix" in clean_verifiers
    verifier = clean_verifiers.build("test_prefix", {"prefix": ">> "})
    assert verifier.verify(prompt="", completion=">> yes", target="yes").reward == 1.0
    assert verifier.verify(prompt="", completion="yes", target="yes").reward == 0.0
    assert clean_verifiers.get("test_prefix").fn is starts_with
    assert clean_verifiers.schema_for("test_prefix")["additionalProperties"] is True


def test_register_verifier_fn_rejects_non_numeric_scores(clean_verifiers):
    register_verifier_fn("test_bad")(lambda completion, expected: "yes")
    with pytest.raises(TypeError, match="must return a float or bool"):
        clean_verifiers.build("test_bad").verify(prompt="", completion="x", target="y")


def test_throwaway_registrations_do_not_leak():
    assert "test_prefix" not in VERIFIERS and "test_bad" not in VERIFIERS
