"""``ModelEvalConfig``: everything one model eval needs, as ``evsys eval model`` flags mirror it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from evsys.config import MetricSpec, Strict


class ModelEvalConfig(Strict):
    """Which model, on which rows, scored how; where the predictions and summary go."""

    dataset: str | None = Field(
        None,
        description="A JSONL file of rows, or a harbor benchmark directory (tasks.jsonl + "
        "metadata.yaml). None: the caller passes the rows to evaluate_model.",
    )
    output_dir: str | None = Field(
        None,
        description="Where generations.jsonl (each answer, saved as it arrives), "
        "predictions.jsonl, summary.json and summary.md are written; answers already saved "
        "there by an earlier eval of the same model are reused. None: nothing is written.",
    )
    resume: bool = Field(
        False,
        description="Require answers saved in output_dir by an earlier eval (one that a judge "
        "or an interruption stopped) and score them, asking the model only for the missing.",
    )
    inference_kind: str = Field(
        "mock", description="Registered inference client (see `evsys list --kind inference`)."
    )
    model_name: str | None = Field(
        None, description="Model the client serves: a base model name, path or API model id."
    )
    checkpoint_path: str | None = Field(
        None, description="Checkpoint (mock) or LoRA adapter (local) to load on top of the model."
    )
    adapter_path: str | None = Field(
        None, description="Alias of checkpoint_path for LoRA adapters; give one or the other."
    )
    client_params: dict[str, Any] = Field(
        default_factory=dict,
        description="More params of the inference client (validated by its Config), e.g. "
        "base_url and api_key_env for openai_compatible.",
    )
    aliases: str | None = Field(
        None, description="Alias file (JSON/YAML): answer → accepted spellings. None: exact only."
    )
    secondary_aliases: str | None = Field(
        None,
        description="A looser alias file, scored separately as secondary_pass@k (primary or "
        "secondary names count).",
    )
    max_tokens: int = Field(256, gt=0, description="Most tokens generated per call.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy.")
    num_samples: int = Field(
        1, ge=1, description="Completions per row; pass@k needs num_samples >= k."
    )
    pass_at: list[int] = Field(
        default_factory=lambda: [1], min_length=1, description="The k of each pass@k reported."
    )
    metrics: list[MetricSpec] = Field(
        default_factory=lambda: [MetricSpec(kind="exact_match")],
        description="Registered metrics, scored on each row's first completion.",
    )
    breakdown_keys: list[str] | None = Field(
        None,
        description="Row (or row metadata) keys to break every metric down by. None: the "
        "benchmark's breakdown_keys, if the dataset is a benchmark directory.",
    )
    system_prompt: str | None = Field(
        None, description="System turn added to rows that have none. None: rows as they are."
    )
    prompt_template: Literal["messages", "qwen", "qwen3"] = Field(
        "messages",
        description="`messages`: chat messages for the client to template; `qwen`/`qwen3`: "
        "ChatML text (for raw-text engines).",
    )
    extract: Literal["answer", "slug"] = Field(
        "answer",
        description="How the answer is read from a completion: `answer` (<answer> tags, else "
        "the text) or `slug` (also the last UPPER_SNAKE tool slug).",
    )
    limit: int | None = Field(None, gt=0, description="Score only the first N rows.")
    max_attempts: int = Field(3, ge=1, description="Tries per inference call, the first included.")
    backoff_s: float = Field(
        1.0, ge=0, description="Wait after the first failed try; doubles per try, plus jitter."
    )
    max_backoff_s: float = Field(30.0, ge=0, description="Longest wait between tries.")
    batch_size: int = Field(
        8,
        ge=1,
        description="Rows generated at once: one batch call for batching engines (local, "
        "tinker), that many concurrent requests for per-call clients (APIs).",
    )
    give_up_after: int | None = Field(
        None,
        ge=1,
        description="Stop asking the model after this many calls in a row exhausted their "
        "retries (it is down): the answers so far are kept, the eval ends with an error. "
        "None: every row is tried.",
    )
    fail_on_retries: bool = Field(
        False,
        description="Make `evsys eval model` exit 1 when any call exhausted its retries (the "
        "summary is written either way).",
    )
    label: str | None = Field(
        None, description="Name of the model in the summary. None: model_name, else the kind."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelEvalConfig:
        if self.adapter_path and self.checkpoint_path and self.adapter_path != self.checkpoint_path:
            raise ValueError("give checkpoint_path or adapter_path, not two different paths")
        if max(self.pass_at) > self.num_samples:
            raise ValueError(
                f"pass@{max(self.pass_at)} needs num_samples >= {max(self.pass_at)}, "
                f"got num_samples={self.num_samples}"
            )
        if min(self.pass_at) < 1:
            raise ValueError("every pass_at k must be at least 1")
        return self

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoint_path or self.adapter_path

    @property
    def model_label(self) -> str:
        return self.label or self.model_name or self.inference_kind
