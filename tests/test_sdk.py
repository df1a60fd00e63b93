"""``import evsys_sdk``: the reference's public surface (SDK reference, section 14) over evsys.

Every name of section 14 resolves to evsys's own object or an adapter of it; the registry helpers
raise ``KeyError`` listing the known keys; ``load_yaml`` expands a matrix into the runs evsys's
sweep would name; the logging functions configure the standard library's ``evsys`` logger.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import evsys
import evsys_sdk
from evsys.errors import UnknownExtensionError
from evsys.reference_yaml import plan
from evsys.registry import registry_for
from evsys_sdk.logger import _level as level_number

EXAMPLES = Path(__file__).parent / "reference_examples"
REPO = Path(__file__).resolve().parent.parent

# Section 14 of the SDK reference, "Public API surface", name by name.
CONFIG_MODELS = [
    "ExperimentConfig",
    "RunConfig",
    "AlgorithmConfig",
    "DataConfig",
    "ModelConfig",
    "BackendConfig",
    "EvalConfig",
    "DataStoreSpec",
    "LogStoreSpec",
    "MetricSpec",
    "VerifierSpec",
    "TransformSpec",
    "InferenceSpec",
]
PROTOCOLS = [
    "Algorithm",
    "Backend",
    "DataStore",
    "LogStore",
    "Metric",
    "Verifier",
    "Transform",
    "InferenceClient",
    "RunContext",
    "RunResult",
]
KINDS = {  # register_<kind> / get_<kind> / list_<plural>: evsys's registry behind each
    "algorithm": ("algorithm", "algorithms"),
    "verifier": ("verifier", "verifiers"),
    "metric": ("metric", "metrics"),
    "backend": ("backend", "backends"),
    "inference": ("inference_client", "inference"),
    "transform": ("transform", "transforms"),
    "data_store": ("data_store", "data_stores"),
    "log_store": ("log_store", "log_stores"),
}
DATA_SHAPES = [
    "TargetFormat",
    "ChatMessagesRow",
    "HarborTask",
    "PromptExample",
    "InProcessVerifier",
    "E2BVerifier",
    "LLMJudgeVerifier",
    "VerifierPayload",
    "text_block",
    "image_url_block",
    "image_base64_block",
    "block_to_image_src",
    "has_images",
    "detect_format",
    "from_dict",
    "to_dict",
    "iter_jsonl",
]
OTHERS = [
    "load_yaml",
    "dump_yaml",
    "validate_yaml",
    "run_experiment",
    "schema_for",
    "DashboardClient",
    "ExperimentRun",
    "DashboardClientError",
    "EvsysAuthError",
    "configure_logger",
    "get_logger",
    "set_level",
]


def registry_names() -> list[str]:
    names = [f"{verb}_{kind}" for kind in KINDS for verb in ("register", "get")]
    return names + [f"list_{plural}" for _, plural in KINDS.values()]


def test_every_name_of_section_14_is_exported() -> None:
    names = CONFIG_MODELS + PROTOCOLS + DATA_SHAPES + OTHERS + registry_names()
    missing = [name for name in names if not hasattr(evsys_sdk, name)]
    assert missing == []
    assert set(names) <= set(evsys_sdk.__all__)


def test_the_names_are_evsys_own_objects() -> None:
    """A thin layer: the same classes and functions, not copies."""
    from evsys.data import types
    from evsys.reference_yaml import ReferenceConfig

    assert evsys_sdk.ExperimentConfig is ReferenceConfig  # the root of the reference's file
    for name in CONFIG_MODELS[1:] + PROTOCOLS:
        assert getattr(evsys_sdk, name) is getattr(evsys, name), name
    for name in DATA_SHAPES:
        assert getattr(evsys_sdk, name) is getattr(types, name), name
    for name in ("DashboardClient", "ExperimentRun", "DashboardClientError", "EvsysAuthError"):
        assert getattr(evsys_sdk, name) is getattr(evsys, name), name
    for kind in KINDS:
        assert getattr(evsys_sdk, f"register_{kind}") is getattr(evsys, f"register_{kind}")
    assert evsys_sdk.Experiment is evsys.Experiment


@pytest.mark.parametrize("kind", list(KINDS))
def test_get_and_list_read_evsys_registries(kind: str) -> None:
    registry = registry_for(KINDS[kind][0])
    lister = getattr(evsys_sdk, f"list_{KINDS[kind][1]}")
    names = lister()
    assert names == registry.names() and names
    getter = getattr(evsys_sdk, f"get_{kind}")
    assert all(getter(name) is registry.get(name) for name in names)


def test_registering_through_the_sdk_is_seen_by_evsys(clean_registries) -> None:
    @evsys_sdk.register_metric("always_half")
    class AlwaysHalf:
        def compute(self, *, predictions, targets):
            return 0.5

    assert AlwaysHalf.name == "always_half"
    assert evsys_sdk.get_metric("always_half") is AlwaysHalf
    assert "always_half" in evsys_sdk.list_metrics()
    assert "always_half" in registry_for("metric")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(KINDS)), name=st.text(max_size=40))
def test_a_registry_miss_is_a_key_error_listing_the_keys(kind: str, name: str) -> None:
    registry = registry_for(KINDS[kind][0])
    if name in registry:
        return
    with pytest.raises(KeyError) as caught:
        getattr(evsys_sdk, f"get_{kind}")(name)
    message = str(caught.value)
    assert all(known in message for known in registry.names())
    assert isinstance(caught.value, UnknownExtensionError)  # evsys's error too
    with pytest.raises(KeyError):
        evsys_sdk.schema_for(KINDS[kind][0], name)


def test_the_miss_survives_pickling_as_a_key_error() -> None:
    with pytest.raises(KeyError) as caught:
        evsys_sdk.get_backend("tinkr")
    again = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(again, KeyError) and str(again) == str(caught.value)
    assert "did you mean 'tinker'" in str(again)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("algorithm", "sft"),
        ("inference_client", "mock"),
        ("inference", "mock"),
        ("log_store", "jsonl"),
        ("data_store", "local"),
        ("metric", "exact_match"),
    ],
)
def test_schema_for_is_the_params_schema(kind: str, name: str) -> None:
    assert evsys_sdk.schema_for(kind, name) == registry_for(kind).schema_for(name)


def test_schema_for_an_unknown_kind_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="algorithm"):
        evsys_sdk.schema_for("algorithmz", "sft")


# -- YAML ------------------------------------------------------------------------------------------


def test_load_yaml_expands_the_matrix_into_the_runs_evsys_sweeps(workdir: Path) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "train.jsonl").write_text(
        (REPO / "data" / "tool_selection" / "train.jsonl").read_text()
    )
    config = evsys_sdk.load_yaml(EXAMPLES / "matrix.yaml")
    assert isinstance(config, evsys_sdk.ExperimentConfig)
    assert config.matrix is None and len(config.runs) == 6
    names = [run["name"] for run in config.runs]
    assert names[:2] == ["sweep__rank1__lr0p0001", "sweep__rank1__lr5e-05"]

    # The same arms and configs as the matrix planned through Hydra; each run is named as its
    # arm (the reference's cells are renamed; evsys's arms keep the base run's config name).
    def arms(source):
        return [(a.name, a.config.model_dump(exclude={"name"})) for a in plan(source)]

    assert arms(config) == arms(EXAMPLES / "matrix.yaml")
    assert [a.config.name for a in plan(config)] == names
    assert config.runs[2]["algorithm"]["params"] == {"lora_rank": 8, "learning_rate": 1e-4}
    assert config.path == EXAMPLES / "matrix.yaml"


def test_default_names_and_repeated_names_follow_evsys() -> None:
    raw = {
        "name": "e",
        "matrix": {
            "base_run": {"name": "b", "algorithm": {"kind": "sft"}},
            "axes": {"algorithm.params.lora_rank": [1, 2], "seed": [3, 3]},
        },
    }
    from evsys.reference_yaml.source import from_dict

    runs = evsys_sdk.expand_matrix(from_dict(raw)).runs
    assert [r["name"] for r in runs] == [
        "b__lora_rank1__seed3-1",
        "b__lora_rank1__seed3-2",
        "b__lora_rank2__seed3-1",
        "b__lora_rank2__seed3-2",
    ]
    assert runs[0]["algorithm"] == {"kind": "sft", "params": {"lora_rank": 1}}


def test_an_axis_through_a_scalar_is_a_config_error() -> None:
    from evsys.reference_yaml.source import from_dict

    raw = {"name": "e", "matrix": {"base_run": {"name": "b", "seed": 1}, "axes": {"seed.x": [1]}}}
    with pytest.raises(evsys.ConfigError, match=r"matrix\.axes\.seed\.x"):
        evsys_sdk.expand_matrix(from_dict(raw))


def test_dump_and_validate_are_evsys_own(tmp_path: Path) -> None:
    config = evsys_sdk.load_yaml(EXAMPLES / "runs.yaml")
    text = evsys_sdk.dump_yaml(config, tmp_path / "again.yaml")
    assert evsys_sdk.load_yaml(tmp_path / "again.yaml").runs == config.runs
    assert "runs:" in text
    from evsys.reference_yaml import validate_yaml

    assert evsys_sdk.validate_yaml is validate_yaml


# -- logging ---------------------------------------------------------------------------------------


@pytest.fixture
def evsys_logger():
    logger = logging.getLogger("evsys")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_configure_logger_sends_evsys_records_once(evsys_logger, monkeypatch) -> None:
    monkeypatch.setenv("EVSYS_LOGGING_LEVEL", "warning")
    stream = io.StringIO()
    evsys_sdk.configure_logger(stream=io.StringIO())
    logger = evsys_sdk.configure_logger(stream=stream, fmt="%(name)s|%(message)s")
    assert logger is evsys_logger and logger.level == logging.WARNING
    logging.getLogger("evsys.run.runner").info("hidden")
    evsys_sdk.get_logger("mine").warning("shown")
    assert stream.getvalue() == "evsys.mine|shown\n"  # one handler: the second call replaced it
    evsys_sdk.set_level("debug")
    evsys_sdk.get_logger("evsys.x").debug("now")
    assert stream.getvalue().endswith("evsys.x|now\n")
    assert evsys_sdk.get_logger() is evsys_logger


@given(level=st.text(max_size=12))
def test_a_bad_level_is_one_value_error(level: str) -> None:
    try:
        number = level_number(level)
    except ValueError as exc:
        assert repr(level) in str(exc)
    else:
        assert isinstance(number, int)


AXIS_VALUES = st.lists(
    st.one_of(st.integers(-5, 5), st.floats(1e-6, 1e3), st.text(max_size=8), st.booleans()),
    min_size=1,
    max_size=3,
)


@settings(max_examples=80, deadline=None)
@given(
    axes=st.dictionaries(
        st.sampled_from(["seed", "algorithm.params.lr", "eval.n_samples", "data.path"]),
        AXIS_VALUES,
        min_size=1,
        max_size=3,
    ),
    template=st.one_of(st.none(), st.text(max_size=20)),
)
@example(axes={"seed": [-1, "", ""]}, template=None)  # "seed-1" beside two "seed" cells
def test_every_cell_is_one_named_run(axes: dict, template: str | None) -> None:
    """Any axes and template: one run per cell, its values set, names unique and directory-safe."""
    import math

    from evsys.reference_yaml.source import from_dict

    raw = {"name": "e", "matrix": {"base_run": {"name": "b"}, "axes": axes}}
    if template is not None:
        raw["matrix"]["name_template"] = template
    runs = evsys_sdk.expand_matrix(from_dict(raw)).runs
    assert len(runs) == math.prod(len(values) for values in axes.values())
    names = [run["name"] for run in runs]
    assert len(set(names)) == len(names)
    assert all(name and "/" not in name and "${" not in name for name in names)
    last = runs[-1]
    for key, values in axes.items():
        node = last
        for part in key.split("."):
            node = node[part]
        assert node == values[-1]
