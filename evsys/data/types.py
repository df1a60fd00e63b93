"""The Harbor interchange types: the row shapes runners consume and dashboards render.

They mirror the production ("Harbor") types field for field, so JSONL moves between evsys and
the serving/dashboard stack without conversion: ``from_dict(to_dict(x)) == x``.

- :class:`ChatMessagesRow` (SFT): a conversation and the assistant text to learn.
- :class:`HarborTask` (RL): an instruction and a :data:`VerifierPayload` describing how a
  completion is checked. The payload is data, the plan; :class:`evsys.protocols.Verifier` is what
  executes a check.
- :class:`PromptExample` (prompt tuning): named inputs and the expected output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from evsys.data.jsonl import iter_numbered_objects, open_text
from evsys.errors import DataError

Row = dict[str, Any]


class TargetFormat(StrEnum):
    CHAT_MESSAGES = "chat_messages"
    HARBOR_TASK = "harbor_task"
    PROMPT_DATASET = "prompt_dataset"


# -- verifier payloads ------------------------------------------------------------------------


@dataclass(frozen=True)
class InProcessVerifier:
    """A registered Python function, called as ``fn(completion, expected, **params)``."""

    fn_name: str
    expected: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    kind: Literal["in_process"] = field(default="in_process", init=False)


@dataclass(frozen=True)
class E2BVerifier:
    """Runs the completion and ``test_sh`` in an E2B sandbox; the exit code is the verdict."""

    dockerfile: str
    test_sh: str
    test_state_py: str | None = None
    kind: Literal["e2b"] = field(default="e2b", init=False)


@dataclass(frozen=True)
class SandboxVerifier:
    """Runs the completion's Python code, then ``tests``, in a local sandbox (:mod:`evsys.sandbox`):
    the task passes when the tests run to their end without error. The offline stand-in for
    :class:`E2BVerifier`; an evsys extension, not a production Harbor type."""

    tests: str
    timeout_s: float = 10.0
    memory_mb: int = 512
    kind: Literal["sandbox"] = field(default="sandbox", init=False)


@dataclass(frozen=True)
class LLMJudgeVerifier:
    """A judge model scores the completion against ``rubric``."""

    judge_model: str
    rubric: str
    kind: Literal["llm_judge"] = field(default="llm_judge", init=False)


VerifierPayload = InProcessVerifier | E2BVerifier | SandboxVerifier | LLMJudgeVerifier
_VERIFIER_KINDS: dict[str, type] = {
    cls.kind: cls for cls in (InProcessVerifier, E2BVerifier, SandboxVerifier, LLMJudgeVerifier)
}


# -- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessagesRow:
    messages: list[dict[str, Any]]
    target_assistant: str
    metadata: dict[str, Any] = field(default_factory=dict)
    format: ClassVar[TargetFormat] = TargetFormat.CHAT_MESSAGES


@dataclass(frozen=True)
class HarborTask:
    task_id: str
    instruction: str
    verifier: VerifierPayload
    metadata: dict[str, Any] = field(default_factory=dict)
    format: ClassVar[TargetFormat] = TargetFormat.HARBOR_TASK


@dataclass(frozen=True)
class PromptExample:
    inputs: dict[str, Any]
    expected: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    format: ClassVar[TargetFormat] = TargetFormat.PROMPT_DATASET


TypedRow = ChatMessagesRow | HarborTask | PromptExample
_ROW_CLASSES: dict[str, type] = {
    cls.format.value: cls for cls in (ChatMessagesRow, HarborTask, PromptExample)
}


# -- content blocks ---------------------------------------------------------------------------


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_url_block(url: str, detail: Literal["auto", "low", "high"] = "auto") -> dict[str, Any]:
    """An image by URL, in the OpenAI shape."""
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def image_base64_block(media_type: str, b64: str) -> dict[str, Any]:
    """An inline image, in the Anthropic shape; ``media_type`` like ``image/png``."""
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": b64}}


def block_to_image_src(block: Mapping[str, Any]) -> str:
    """A URL (or ``data:`` URL) a browser can render, from an image block of either shape."""
    kind = block.get("type")
    if kind == "image_url":
        image = block["image_url"]
        return image["url"] if isinstance(image, Mapping) else image
    if kind == "image":
        source = block["source"]
        if source.get("type") == "base64":
            return f"data:{source['media_type']};base64,{source['data']}"
        return source["url"]
    raise DataError(
        f"content block of type {kind!r} is not an image; expected type 'image_url' (OpenAI "
        "shape) or 'image' (Anthropic shape)"
    )


def has_images(row: Mapping[str, Any] | TypedRow) -> bool:
    """Whether any content of the row (metadata aside) holds an image block."""
    data = to_dict(row) if dataclasses.is_dataclass(row) else row
    return any(
        node.get("type") in ("image_url", "image")
        for key, value in data.items()
        if key != "metadata"
        for node in _dicts_within(value)
    )


def _dicts_within(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for item in value.values():
            yield from _dicts_within(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _dicts_within(item)


# -- dict <-> typed rows ----------------------------------------------------------------------


def detect_format(row: Mapping[str, Any] | TypedRow) -> str:
    """``chat_messages``, ``harbor_task``, ``prompt_dataset``, or ``unknown``."""
    if isinstance(row, ChatMessagesRow | HarborTask | PromptExample):
        return row.format.value
    if isinstance(row.get("messages"), list):
        return TargetFormat.CHAT_MESSAGES.value
    if "instruction" in row and isinstance(row.get("verifier"), Mapping):
        return TargetFormat.HARBOR_TASK.value
    if isinstance(row.get("inputs"), Mapping):
        return TargetFormat.PROMPT_DATASET.value
    return "unknown"


def from_dict(row: Mapping[str, Any]) -> TypedRow:
    """The typed row a dict describes. Keys the type has no field for go into ``metadata``."""
    fmt = detect_format(row)
    if fmt == "unknown":
        raise DataError(
            f"row matches no Harbor format (its keys: {', '.join(row) or 'none'}); expected "
            "`messages` (chat_messages), `instruction` and `verifier` (harbor_task), or "
            "`inputs` (prompt_dataset)"
        )
    values = dict(row)
    if fmt == TargetFormat.CHAT_MESSAGES and "target_assistant" not in values:
        values["target_assistant"] = _last_assistant_text(values["messages"])
    if fmt == TargetFormat.HARBOR_TASK:
        values["verifier"] = verifier_from_dict(values["verifier"])
    return _construct(_ROW_CLASSES[fmt], values, fold_extras=True)


def task_row(task: HarborTask) -> Row:
    """A harbor task as the row training and eval read: ``id``, ``prompt`` (the instruction),
    ``answer`` (an in-process verifier's ``expected``, when it has one), ``verifier`` (the
    payload, as a dict) and its metadata, both as keys on top and as ``metadata``."""
    row: Row = {"id": task.task_id, "prompt": task.instruction, "verifier": to_dict(task.verifier)}
    if isinstance(task.verifier, InProcessVerifier) and task.verifier.expected is not None:
        row["answer"] = task.verifier.expected
    return {**task.metadata, **row, "metadata": task.metadata}


def verifier_from_dict(payload: Mapping[str, Any]) -> VerifierPayload:
    """The verifier spec a dict describes, chosen by its ``kind``."""
    kind = payload.get("kind")
    if kind not in _VERIFIER_KINDS:
        raise DataError(
            f"verifier.kind={kind!r} is not a known verifier payload; expected one of: "
            f"{', '.join(_VERIFIER_KINDS)}"
        )
    values = {k: v for k, v in payload.items() if k != "kind"}
    return _construct(_VERIFIER_KINDS[kind], values, fold_extras=False)


def to_dict(obj: TypedRow | VerifierPayload) -> Row:
    """Plain JSON-ready dict of a typed row (or verifier spec), ``kind`` included."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict expects a Harbor row or verifier spec, got {type(obj).__name__}")
    return dataclasses.asdict(obj)


def iter_jsonl(path: str | Path) -> Iterator[TypedRow]:
    """Typed rows of a (possibly mixed-format) JSONL file; errors say ``file:line``."""
    with open_text(path) as handle:
        for number, obj in iter_numbered_objects(handle, str(path)):
            try:
                yield from_dict(obj)
            except DataError as exc:
                raise DataError(f"{path}:{number}: {exc}") from None


def _construct(cls: type, values: dict[str, Any], *, fold_extras: bool) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    extras = {k: v for k, v in values.items() if k not in fields}
    if extras and not fold_extras:
        raise DataError(
            f"{cls.__name__}: unknown keys {', '.join(extras)}; its fields are {', '.join(fields)}"
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise DataError(f"{cls.__name__}: missing {', '.join(missing)}")
    known = {k: v for k, v in values.items() if k in fields}
    metadata = known.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise DataError(f"{cls.__name__}: metadata must be an object, found {metadata!r}")
    if extras:
        # An explicit metadata key wins over a top-level key of the same name.
        known["metadata"] = {**extras, **metadata}
    return cls(**known)


def _last_assistant_text(messages: list[Any]) -> str:
    last = messages[-1] if messages else None
    is_assistant = isinstance(last, Mapping) and last.get("role") == "assistant"
    if is_assistant and isinstance(last.get("content"), str):
        return last["content"]
    raise DataError(
        "chat row has no `target_assistant` and its last message is not an assistant turn "
        "with text content; add `target_assistant`"
    )
