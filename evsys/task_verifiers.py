"""Executing a harbor task's own verifier: the payload of :mod:`evsys.data.types` as a Verifier.

A harbor task's row (:func:`evsys.data.types.task_row`) carries its verifier payload under
``verifier``. :func:`task_verifier` turns a payload into something with the Verifier protocol's
``verify``, and refuses, naming the task, one that cannot run:

- ``in_process``: the verifier registered as ``fn_name`` (a class, or a function registered with
  :func:`evsys.verifiers.register_verifier_fn`), built with the payload's ``params`` and called
  with ``expected`` as its target: ``fn(completion, expected, **params)``;
- ``sandbox``: the completion's code and the task's tests in :mod:`evsys.sandbox`;
- ``llm_judge``: the registered inference client ``judge`` (an ``{kind, params}`` spec, e.g.
  ``claude`` or ``openai_compatible``) asked for ``judge_model``'s verdict; given only where a
  judge is configured (the ``pass_rate`` metric's ``judge``, or an RL recipe whose ``verifier``
  is the ``llm_judge`` verifier, :class:`LLMJudge`), refused elsewhere;
- ``e2b``: the task's ``test_sh`` in an E2B sandbox (:mod:`evsys.e2b_tasks`), which needs
  ``E2B_API_KEY``.

:class:`RowVerifier` is what RL rollouts and the ``pass_rate`` metric score with: a row that
carries a payload is scored by it, any other row by the run's configured verifier.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError

from evsys.clients.retry import Refused
from evsys.clients.usage import CallUsage, meter_of, summarize
from evsys.config import InferenceSpec, Strict, VerifierSpec
from evsys.data.types import (
    E2BVerifier,
    InProcessVerifier,
    LLMJudgeVerifier,
    SandboxVerifier,
    VerifierPayload,
    verifier_from_dict,
)
from evsys.e2b_tasks import E2BTask
from evsys.errors import ConfigError, DataError
from evsys.protocols import Row, VerificationResult
from evsys.registry import INFERENCE_CLIENTS, VERIFIERS, closest, register_verifier

log = logging.getLogger(__name__)

TASK_VERIFIER_KEY = "verifier"
"""The row key holding a harbor task's verifier payload."""
MIN_SANDBOX_MEMORY_MB = 64
"""Below this the sandbox's Python cannot even start (RLIMIT_AS counts its whole address space)."""


class InProcessTask:
    """``fn_name``'s verdict on the completion, with the task's ``expected`` as its target."""

    def __init__(self, payload: InProcessVerifier, where: str):
        name = payload.fn_name
        if name not in VERIFIERS:
            names = VERIFIERS.names()
            hint = f" (did you mean '{guess}'?)" if (guess := closest(name, names)) else ""
            raise DataError(
                f"{where}: verifier.fn_name={name!r} is not a registered verifier{hint}; "
                f"registered: {', '.join(names)}. Register a function with "
                "@register_verifier_fn(name) in a module the run imports"
            )
        try:
            self.verifier = VERIFIERS.build(name, payload.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(params)'}: {e['msg']}" for e in exc.errors()
            )
            raise DataError(
                f"{where}: verifier.params of '{name}' are invalid: {problems}"
            ) from None
        self.fn_name, self.expected = name, payload.expected

    def verify(self, *, prompt: str, completion: str, target: Any = None) -> VerificationResult:
        result = self.verifier.verify(prompt=prompt, completion=completion, target=self.expected)
        return VerificationResult(float(result.reward), {"fn_name": self.fn_name, **result.info})


class SandboxTask:
    """Pass (1.0) when the completion's code passes the task's tests in the sandbox."""

    def __init__(self, payload: SandboxVerifier, where: str):
        if not isinstance(payload.tests, str) or not payload.tests.strip():
            raise DataError(f"{where}: verifier.tests must hold the Python tests to run")
        if not 0 < payload.timeout_s <= 600:
            raise DataError(
                f"{where}: verifier.timeout_s={payload.timeout_s!r} must be in (0, 600] seconds"
            )
        if payload.memory_mb < MIN_SANDBOX_MEMORY_MB:
            raise DataError(
                f"{where}: verifier.memory_mb={payload.memory_mb!r} is too small for Python to "
                f"start; give at least {MIN_SANDBOX_MEMORY_MB}"
            )
        self.payload = payload

    def verify(self, *, prompt: str, completion: str, target: Any = None) -> VerificationResult:
        # Imported here: subprocess, ctypes and socket stay off the start-up path of every run.
        from evsys.sandbox import extract_code, run_python

        p = self.payload
        result = run_python(
            extract_code(completion), p.tests, timeout_s=p.timeout_s, memory_mb=p.memory_mb
        )
        info = {
            "reason": result.reason,
            "exit_code": result.exit_code,
            "network": result.network,
            "stderr": result.stderr,
        }
        return VerificationResult(float(result.passed), info)


JUDGE_PROMPT = """You grade a response to a task against a rubric.

Task:
{instruction}
{reference}
Response:
{completion}

Rubric:
{rubric}

Think it through, then end with the score alone as <answer>SCORE</answer>: a number from 0 (the
response fails the rubric) to 1 (it fully meets it)."""
REFERENCE = "\nA reference answer (the response need not match it word for word):\n{answer}\n"
"""Shown to the judge when the task's row has an ``answer``; a task without one is judged on
the rubric alone."""
_VERDICT = re.compile(r"<answer>\s*([0-9]*\.?[0-9]+)\s*</answer>")


class JudgeTask:
    """``judge_model``'s score of the completion against the rubric, through the ``judge``
    client. A reply without a readable score, or a judge that refuses to judge, is a failure
    (0.0), reported in ``info`` and the log, never an exception; a judge that cannot be reached
    raises (no score beats a wrong one).
    A hosted judge's calls are metered (:meth:`calls`)."""

    def __init__(
        self, payload: LLMJudgeVerifier, judge: InferenceSpec, where: str, max_tokens: int = 512
    ):
        self.payload, self.where, self.max_tokens = payload, where, max_tokens
        try:
            self.client = INFERENCE_CLIENTS.build(
                judge.kind, {**judge.params, "model": payload.judge_model}
            )
        except (ValidationError, ConfigError) as exc:  # an unknown kind is a ConfigError too
            raise DataError(
                f"{where}: the judge client '{judge.kind}' cannot be built: {exc}"
            ) from None

    def verify(self, *, prompt: str, completion: str, target: Any = None) -> VerificationResult:
        answer = target.get("answer") if isinstance(target, Mapping) else None
        question = JUDGE_PROMPT.format(
            instruction=prompt,
            reference="" if answer is None else REFERENCE.format(answer=answer),
            completion=completion,
            rubric=self.payload.rubric,
        )
        try:
            reply = self.client.generate(
                prompt=question, max_tokens=self.max_tokens, temperature=0.0
            )
        except Refused as exc:  # a judge that declines gives no score, like an unreadable one
            reply, score, problem = "", 0.0, f"the judge refused: {exc.error}"
        else:
            score, problem = parse_verdict(reply)
        info = {"judge_model": self.payload.judge_model, "reply": reply[-500:]}
        if problem is not None:
            # Named by the row judged: one executor judges every task that shares its payload.
            where = f"task {target.get('id')!r}" if isinstance(target, Mapping) else self.where
            log.warning("%s: the judge's verdict is unreadable (%s); scored 0", where, problem)
            return VerificationResult(0.0, {**info, "verdict_error": problem})
        return VerificationResult(score, info)

    def calls(self) -> list[CallUsage]:
        meter = meter_of(self.client)
        return meter.calls() if meter is not None else []


@register_verifier("llm_judge")
class LLMJudge:
    """A judge model scores each completion against a rubric (``<answer>SCORE</answer>``, a
    number in [0, 1]; anything else scores 0 and is logged). As an RL recipe's ``verifier`` it
    is also the judge client of the harbor ``llm_judge`` tasks among the rows, which keep their
    own ``judge_model`` and ``rubric``."""

    class Config(Strict):
        judge: InferenceSpec = Field(
            description="The inference client that judges ({kind, params}), e.g. {kind: claude, "
            "params: {api_key_env: ANTHROPIC_API_KEY}}; its `model` is the judge_model."
        )
        judge_model: str | None = Field(
            None, description="The judge's model id. None: the judge client's params.model."
        )
        rubric: str | None = Field(
            None,
            description="What a good completion does, for rows without a verifier of their own. "
            "None: every row must be a harbor llm_judge task (it brings its rubric).",
        )
        max_tokens: int = Field(512, ge=16, description="Most tokens of one verdict.")

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        model = self.cfg.judge_model or self.cfg.judge.params.get("model")
        self._task: JudgeTask | None = None
        if self.cfg.rubric is not None:
            if not model:
                raise ConfigError(
                    "the llm_judge verifier needs judge_model (or the judge's params.model)"
                )
            payload = LLMJudgeVerifier(judge_model=str(model), rubric=self.cfg.rubric)
            self._task = JudgeTask(payload, self.cfg.judge, "llm_judge", self.cfg.max_tokens)

    @property
    def judge(self) -> InferenceSpec:
        return self.cfg.judge

    def verify(self, *, prompt: str, completion: str, target: Any = None) -> VerificationResult:
        if self._task is None:
            raise DataError(
                f"row {_describe(target)} is not an llm_judge task, and the llm_judge "
                "verifier has no rubric to judge it by: give the verifier a `rubric`"
            )
        return self._task.verify(prompt=prompt, completion=completion, target=target)

    def calls(self) -> list[CallUsage]:
        return self._task.calls() if self._task is not None else []


def parse_verdict(reply: str) -> tuple[float, str | None]:
    """The score of the judge's last ``<answer>``: a number in [0, 1]. Anything else: 0.0 and
    what was wrong."""
    tags = re.findall(r"<answer>(.*?)</answer>", reply, re.DOTALL)
    if not tags:
        return 0.0, "no <answer>SCORE</answer> in the reply"
    found = _VERDICT.fullmatch(f"<answer>{tags[-1]}</answer>")
    if found is None:
        return 0.0, f"<answer>{tags[-1].strip()[:40]}</answer> is not a number"
    score = float(found[1])
    if not 0.0 <= score <= 1.0:
        return 0.0, f"score {score} is outside [0, 1]"
    return score, None


def task_verifier(
    payload: Mapping[str, Any] | VerifierPayload, where: str, judge: InferenceSpec | None = None
) -> Any:
    """The executor of one task's verifier payload; DataError naming ``where`` if it cannot run.
    ``judge``: the inference client that scores ``llm_judge`` tasks (None: they are refused)."""
    if isinstance(payload, Mapping):
        try:
            payload = verifier_from_dict(payload)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    if isinstance(payload, InProcessVerifier):
        return InProcessTask(payload, where)
    if isinstance(payload, SandboxVerifier):
        return SandboxTask(payload, where)
    if isinstance(payload, E2BVerifier):
        return E2BTask(payload, where)
    if isinstance(payload, LLMJudgeVerifier):
        if judge is None:
            raise DataError(
                f"{where}: verifier.kind='llm_judge' needs a judge client: in a benchmark, "
                "its pass_rate metric's judge: metrics: [{kind: pass_rate, params: {judge: "
                "{kind: claude, params: {…}}}}]; for RL, the recipe's verifier: "
                "algorithm.params.verifier={kind: llm_judge, params: {judge: {kind: claude, "
                "params: {…}}}}"
            )
        return JudgeTask(payload, judge, where)
    raise DataError(f"{where}: {type(payload).__name__} is not a verifier payload")


def rollout_verifier(spec: VerifierSpec) -> RowVerifier:
    """What RL rewards a rollout with: its task's own verifier, else the recipe's ``verifier``
    (an ``llm_judge`` verifier also judges the harbor ``llm_judge`` tasks)."""
    default = VERIFIERS.build(spec.kind, spec.params)
    return RowVerifier(default, judge=getattr(default, "judge", None))


def recipe_judge(params: Mapping[str, Any]) -> InferenceSpec | None:
    """The judge client of a recipe whose ``verifier`` is ``llm_judge`` (see :class:`LLMJudge`);
    None for any other recipe. Lets the rows it trains on hold harbor llm_judge tasks."""
    verifier = params.get("verifier")
    if not isinstance(verifier, Mapping) or verifier.get("kind") != "llm_judge":
        return None
    judge = (verifier.get("params") or {}).get("judge")
    return InferenceSpec.model_validate(judge) if judge is not None else None


def check_task_verifiers(rows: list[Row], where: str, judge: InferenceSpec | None = None) -> None:
    """Refuse, before anything runs, a row whose verifier payload cannot run. ``judge``: the
    client that would judge ``llm_judge`` tasks (None: they are refused)."""
    checker = RowVerifier(None, judge=judge)
    for index, row in enumerate(rows):
        checker.check(row, f"{where} row {index}")


class RowVerifier:
    """Scores a row's completion with the row's own verifier payload, else with ``default``.

    Executors are built once per distinct payload. ``default`` None: every row must carry one.
    ``judge``: the client that scores ``llm_judge`` tasks (None: they are refused).
    """

    def __init__(self, default: Any, judge: InferenceSpec | None = None):
        self.default, self.judge = default, judge
        self._executors: dict[str, Any] = {}
        self._building = threading.Lock()  # rollouts are scored from several threads at once

    def verify(self, *, prompt: str, completion: str, target: Any) -> VerificationResult:
        payload = own_payload(target)
        if payload is not None:
            executor = self._executor(payload, f"task {target.get('id')!r}")
            return executor.verify(prompt=prompt, completion=completion, target=target)
        if self.default is None:
            raise DataError(
                f"row {_describe(target)} carries no harbor verifier ('{TASK_VERIFIER_KEY}'), "
                "and there is no other verifier to score it"
            )
        return self.default.verify(prompt=prompt, completion=completion, target=target)

    def judge_calls(self) -> list[CallUsage]:
        """Every call a judge model answered for this verifier (its cost, latency, tokens)."""
        calls = list(getattr(self.default, "calls", list)())
        for executor in self._executors.values():
            calls += getattr(executor, "calls", list)()
        return calls

    def judge_usage(self, prefix: str = "train/judge") -> dict[str, float]:
        """``{<prefix>/cost_usd, …/latency_p50_s, …/latency_p95_s, …/tokens_in, …}`` of the
        judge's calls; empty when no judge model was asked."""
        return summarize(self.judge_calls(), prefix)

    def check(self, row: Row, where: str) -> None:
        """Build (and keep) the executor of ``row``'s payload now; DataError if it cannot run."""
        payload = own_payload(row)
        if payload is not None:
            self._executor(payload, f"{where} (task {row.get('id')!r})")

    def _executor(self, payload: Mapping[str, Any], where: str) -> Any:
        key = json.dumps(payload, sort_keys=True, default=str)
        with self._building:  # one executor per payload, so one meter of its judge's calls
            if key not in self._executors:
                self._executors[key] = task_verifier(payload, where, self.judge)
            return self._executors[key]


def own_payload(row: Any) -> Mapping[str, Any] | None:
    """The verifier payload a harbor task's row carries; None for other rows (a plain column
    that happens to be called ``verifier`` is not one: payloads are objects)."""
    payload = row.get(TASK_VERIFIER_KEY) if isinstance(row, Mapping) else None
    return payload if isinstance(payload, Mapping) else None


def _describe(row: Any) -> str:
    if isinstance(row, Mapping):
        return repr(row.get("id")) if row.get("id") is not None else f"with keys {sorted(row)}"
    return repr(row)
