"""The schema of a run: what Hydra composes is validated against these models.

Every model forbids unknown keys, so a misspelt key is an error, not a silently ignored setting.
Pluggable blocks are ``{kind, params}`` envelopes: ``kind`` is a registry key and ``params`` is
validated by that extension's own ``Config`` (see :mod:`evsys.validation`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from evsys import shorthand_forms
from evsys.arm_resources import ArmResources

# The building blocks (Seed, Strict, the {kind, params} envelopes) live in evsys.extension_specs;
# their names stay importable from this module, where users import them.
from evsys.extension_specs import SEED_MAX as SEED_MAX
from evsys.extension_specs import AlgorithmConfig as AlgorithmConfig
from evsys.extension_specs import BackendConfig as BackendConfig
from evsys.extension_specs import BaselineModelSpec as BaselineModelSpec
from evsys.extension_specs import CallbackSpec as CallbackSpec
from evsys.extension_specs import DataStoreSpec as DataStoreSpec
from evsys.extension_specs import DeploySpec as DeploySpec
from evsys.extension_specs import EnvironmentSpec as EnvironmentSpec
from evsys.extension_specs import ExtensionSpec as ExtensionSpec
from evsys.extension_specs import InferenceSpec as InferenceSpec
from evsys.extension_specs import LogStoreSpec as LogStoreSpec
from evsys.extension_specs import MetricSpec as MetricSpec
from evsys.extension_specs import Seed as Seed
from evsys.extension_specs import Strict as Strict
from evsys.extension_specs import TransformSpec as TransformSpec
from evsys.extension_specs import VerifierSpec as VerifierSpec
from evsys.extension_specs import baseline_model as baseline_model
from evsys.hf_names import HFConfigName, HFDatasetName
from evsys.renderers import RendererName


def _check_reference(kind: str, reference: str, *, what: str, fix: str = "") -> None:
    """Refuse a dashboard reference that nothing on this machine can resolve: no dashboard is
    configured and it was never pulled here. Whether it exists is pre-flight's to ask."""
    from evsys.reference_cache import why_unresolvable

    reason = why_unresolvable(kind, reference)
    if reason is not None:
        raise ValueError(f"{what} cannot be resolved: {reason}" + (f"; {fix}" if fix else ""))


# -- run parts --------------------------------------------------------------------------------

SourceKind = Literal["jsonl", "json", "in_memory", "hf_dataset"]


class DataConfig(Strict):
    """Where the training rows come from and how they are transformed."""

    source_kind: SourceKind = Field("jsonl", description="Which built-in loader reads the rows.")
    path: str | None = Field(
        None,
        description="File for jsonl/json sources, relative to the data store root or absolute.",
    )
    eval_path: str | None = Field(
        None,
        description=(
            "Held-out rows (same source kind) that eval scores when eval.eval_data is not set. "
            "None: eval scores the training rows."
        ),
    )
    rows: list[dict[str, Any]] | None = Field(None, description="Rows for the in_memory source.")
    hf_dataset: HFDatasetName | None = Field(
        None,
        description=(
            "For hf_dataset: a `datasets` builder name (json, csv, parquet, …), a dataset "
            "directory under the data store, or a Hub id (owner/name: downloaded once into "
            "the Hugging Face cache, read from it offline)."
        ),
    )
    hf_data_files: str | list[str] | None = Field(
        None, description="For hf_dataset with a builder name: the local files to load."
    )
    hf_split: str = Field("train", description="For hf_dataset: the split to read.")
    hf_config: HFConfigName | None = Field(
        None, description="For hf_dataset with a Hub id: the dataset's config. None: its default."
    )
    dataset_id: str | None = Field(
        None,
        description="A dataset uploaded to the evsys dashboard (`evsys dataset upload`), by id: "
        "its rows are pulled once into .evsys/datasets/<id> and read from there (an id never "
        "changes). When set (or dataset_name), source_kind and path are ignored.",
    )
    dataset_name: str | None = Field(
        None,
        description="A dashboard dataset by name: its latest version when the sweep starts, "
        "pinned for every arm; offline, the version this machine pulled last.",
    )
    transforms: list[TransformSpec] = Field(
        default_factory=list, description="Applied in order to the loaded rows."
    )
    limit: int | None = Field(None, gt=0, description="Keep only the first N rows. None: all.")

    @property
    def reference(self) -> str | None:
        """The dashboard dataset the rows come from (its id, else its name); None: local rows."""
        return self.dataset_id or self.dataset_name

    @model_validator(mode="after")
    def _source_has_its_input(self) -> DataConfig:
        if self.dataset_id is not None and self.dataset_name is not None:
            raise ValueError("give one of dataset_id and dataset_name, not both")
        if self.reference is not None:
            which = "dataset_id" if self.dataset_id is not None else "dataset_name"
            _check_reference("datasets", self.reference, what=f"{which} '{self.reference}'")
            return self
        needed = {"jsonl": "path", "json": "path", "in_memory": "rows", "hf_dataset": "hf_dataset"}
        field = needed[self.source_kind]
        if getattr(self, field) is None:
            raise ValueError(f"source_kind '{self.source_kind}' needs `{field}` to be set")
        return self


class ModelConfig(Strict):
    """The base model to train."""

    name: str = Field(description="Hugging Face id or local directory of the base model.")
    load_checkpoint_path: str | None = Field(
        None, description="Start from this adapter or checkpoint instead of the base weights."
    )
    renderer_name: RendererName | None = Field(
        None,
        description="The tinker backend's chat renderer (qwen3, qwen3_disable_thinking, "
        "llama3, role_colon) for rows and prompts. None: the tokenizer's own chat template "
        "(the template every other backend uses).",
    )


class EvalConfig(Strict):
    """Best-effort scoring of the trained model after training."""

    enabled: bool = Field(True, description="Skip eval entirely when false.")
    baseline: bool = Field(
        False,
        description="Also score the starting model before training (as baseline/<metric>), so "
        "the run shows before and after side by side.",
    )
    metrics: list[MetricSpec] = Field(
        default_factory=list, description="Metrics to compute; eval is skipped when empty."
    )
    inference: InferenceSpec | None = Field(
        None, description="How to query the trained model. None: the backend's own client."
    )
    eval_data: DataConfig | None = Field(
        None, description="Rows to score. None: data.eval_path, else the training rows."
    )
    n_samples: int | None = Field(None, gt=0, description="Score at most N rows. None: all.")
    max_tokens: int = Field(256, gt=0, description="Generation budget per row.")
    temperature: float = Field(0.0, ge=0, description="0 means greedy decoding.")


# -- experiment metadata ------------------------------------------------------------------------


class SuccessMetric(Strict):
    """The metric that ranks arms, and which way is better."""

    name: str = Field(description="A key of run_result.json metrics, e.g. eval/exact_match.")
    direction: Literal["max", "min"] = Field("max", description="Whether higher is better.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class BenchmarkSpec(Strict):
    """A benchmark scored on the model: in the loop (tag ``val``) or after training (``test``)."""

    name: str | None = Field(
        None,
        description="Label used in metric names (val/<name>/…). Without `path` and `id`: the "
        "name of a dashboard benchmark, resolved to its latest version.",
    )
    path: str | None = Field(
        None,
        description="Directory holding a harbor-format tasks.jsonl and metadata.yaml. With "
        "`id`, the id is read and `path` is not.",
    )
    id: str | None = Field(
        None,
        description="Dashboard benchmark id (`evsys benchmark upload`): pulled once into "
        ".evsys/benchmarks/<id> and read from there. Needs the dashboard (EVSYS_API_KEY) "
        "unless already pulled here.",
    )
    engine: Literal["harbor"] = Field("harbor", description="Task format of the benchmark.")
    tags: list[str] = Field(
        default_factory=lambda: ["test"],
        description="`val`: scored during training every run_every steps; `test`: once after.",
    )
    run_every: int | None = Field(
        None, gt=0, description="For `val` benchmarks: score every N training steps."
    )
    breakdown_keys: list[str] = Field(
        default_factory=list, description="Task metadata keys to break the metrics down by."
    )
    models: list[str | BaselineModelSpec] = Field(
        default_factory=list,
        description="Models also scored on this `test` benchmark, as baselines: "
        "test/<name>/<metric>@<model>. Each is `<inference kind>:<model>` (e.g. "
        "openai_compatible:gpt-4o-mini, its base URL and key from OPENAI_BASE_URL and "
        "OPENAI_API_KEY) or {kind, params, name}.",
    )
    metrics: list[MetricSpec] = Field(
        default_factory=list, description="Metrics for this benchmark. Empty: eval.metrics."
    )

    @model_validator(mode="before")
    @classmethod
    def _single_model(cls, value: Any) -> Any:
        return shorthand_forms.benchmark_models(value)  # the reference's `model: X`

    @field_validator("id")
    @classmethod
    def _id_needs_the_dashboard(cls, benchmark_id: str | None) -> str | None:
        if benchmark_id is None:
            return None
        _check_reference(
            "benchmarks",
            benchmark_id,
            what=f"benchmark id '{benchmark_id}'",
            fix="or give the benchmark's local directory (tasks.jsonl, metadata.yaml) as `path`",
        )
        return benchmark_id

    @field_validator("models")
    @classmethod
    def _model_strings_name_a_client(
        cls, models: list[str | BaselineModelSpec]
    ) -> list[str | BaselineModelSpec]:
        for entry in models:
            if isinstance(entry, str):
                kind, sep, model = entry.partition(":")
                if not (sep and kind and model):
                    raise ValueError(
                        f"model '{entry}': expected '<inference kind>:<model>', e.g. "
                        "'openai_compatible:gpt-4o-mini', or {kind, params, name}"
                    )
                from evsys.registry import INFERENCE_CLIENTS  # here: config loads before plugins

                if kind not in INFERENCE_CLIENTS:
                    problem = INFERENCE_CLIENTS.unknown(kind).problems[0]
                    hint = f"; did you mean '{problem.suggestion}'?" if problem.suggestion else ""
                    raise ValueError(
                        f"model '{entry}': {problem.message}, expected {problem.expected}{hint}"
                    )
        return models

    @model_validator(mode="after")
    def _role_matches_cadence(self) -> BenchmarkSpec:
        if self.path is None and self.id is None and self.name is None:
            raise ValueError(
                "a benchmark needs `path` (its local directory), or `id` / `name` (a dashboard "
                "benchmark)"
            )
        if self.path is None and self.id is None:
            _check_reference("benchmarks", self.name, what=f"benchmark name '{self.name}'")
        if "val" in self.tags and self.run_every is None:
            raise ValueError("a `val` benchmark needs `run_every` (score every N steps)")
        if self.models and "test" not in self.tags:
            raise ValueError("`models` are scored once, on a `test` benchmark; tag it `test`")
        if "test" in self.tags and self.run_every is not None:
            raise ValueError(
                "a `test` benchmark is scored once after training; drop `run_every` "
                "or tag it `val` (model selection must never key off the test set)"
            )
        return self


class Metadata(Strict):
    """The science around the runs: why they exist and how they are judged."""

    hypothesis: str = Field("", description="The question the experiment answers.")
    tags: list[str] = Field(default_factory=list, description="Free labels for search.")
    success_metric: SuccessMetric | None = Field(
        None, description="Ranks arms into best_arm. A string means direction max."
    )
    objectives: list[SuccessMetric] = Field(
        default_factory=list,
        description="The metrics a multi-objective sweeper (hydra/sweeper=optuna with a list "
        "of directions) optimises, in the order of its directions: each arm returns their "
        "values as a tuple. Empty: the arm returns success_metric's value alone.",
    )
    benchmark: list[BenchmarkSpec] = Field(
        default_factory=list, description="Validation and test benchmarks."
    )
    project_goal_id: str | None = Field(
        None, description="The dashboard goal this work serves; recorded on the experiment."
    )
    notes: dict[str, Any] = Field(
        default_factory=dict, description="Free-form notes (budget, owner, links)."
    )

    @field_validator("benchmark", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


# -- continual learning --------------------------------------------------------------------------

STAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ContinualStage(DataConfig):
    """One stage of a continual run: a dataset, named, trained on after the stages before it."""

    name: str = Field(
        pattern=STAGE_NAME_PATTERN,
        description="Names the stage in metric keys (stage/<i>_<name>/…) and directories.",
    )


class ContinualConfig(Strict):
    """Train once per dataset, in order, each stage from the previous stage's final checkpoint."""

    datasets: list[ContinualStage] = Field(
        min_length=1,
        description="One training stage per entry, chained in order. After every stage the "
        "model is scored on every stage's eval set (eval_path, else its training rows) and on "
        "the `test` benchmarks. The run's own `data` is not trained on.",
    )

    @field_validator("datasets", mode="before")
    @classmethod
    def _name_unnamed_stages(cls, stages: Any) -> Any:
        return shorthand_forms.named_stages(stages)  # the reference names none

    @field_validator("datasets")
    @classmethod
    def _unique_names(cls, stages: list[ContinualStage]) -> list[ContinualStage]:
        names = [stage.name for stage in stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(repeated)}")
        return stages


# -- the composed config ----------------------------------------------------------------------


class RunConfig(Strict):
    """One training run: the cell a sweep varies."""

    name: str = Field(min_length=1, description="Run name; also names its output directory.")
    data: DataConfig
    model: ModelConfig
    algorithm: AlgorithmConfig
    backend: BackendConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: Seed = Field(42, description="Seeds every random choice of the run (0 … 2**32-1).")
    tags: list[str] = Field(default_factory=list, description="Labels of this run.")
    callbacks: list[CallbackSpec] = Field(
        default_factory=list,
        description="Code that watches training on every backend and may stop it (e.g. "
        "early_stopping), called in order at each hook (`evsys list --kind callback`).",
    )


class ExperimentConfig(RunConfig):
    """What ``python -m evsys`` composes: one arm plus the settings around it."""

    version: Literal[1] = Field(1, description="Schema version; bumped on breaking changes.")
    description: str = Field("", description="What this configuration is for.")
    data_store: DataStoreSpec = Field(default_factory=DataStoreSpec)
    log_store: LogStoreSpec = Field(default_factory=LogStoreSpec)
    metadata: Metadata = Field(default_factory=Metadata)
    parent_experiment_id: str | None = Field(
        None, description="The experiment this one evolved from (lineage)."
    )
    continual: ContinualConfig | None = Field(
        None,
        description="Continual learning: train on these datasets in order instead of on `data`, "
        "scoring every stage on every stage's eval set. None: one training run on `data`.",
    )
    resources: ArmResources = Field(
        default_factory=ArmResources,
        description="What this arm asks a cluster for (nodes, GPUs, CPUs, memory, time); unset "
        "fields are the launcher's. The Slurm launcher submits arms of equal resources together.",
    )
    deploy: DeploySpec | None = Field(
        None,
        description="Ship the trained adapter with this deployer (`evsys list --kind deployer`): "
        "a single run once it completed, a sweep's best arm (by metadata.success_metric) when "
        "the sweep ends. The deployment is recorded in that run's run_result.json; a failed "
        "deploy exits 1 and leaves the runs as recorded. None: nothing is deployed (`evsys "
        "deploy <run dir> --to <kind>` ships a run later).",
    )

    def run_config(self) -> RunConfig:
        return RunConfig.model_validate(self.model_dump(include=set(RunConfig.model_fields)))
