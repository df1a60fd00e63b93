"""evsys_sdk: the reference SDK's public surface (its section 14), as a thin layer over evsys.

Code written for evsys-sdk imports from here unchanged::

    from evsys_sdk import run_experiment, load_yaml

    cfg = load_yaml("config.yaml")        # -> ExperimentConfig (matrix expanded)
    results = run_experiment(cfg)          # -> list[RunResult]
    for r in results:
        print(r.run_id, r.status, r.metrics)

Every name is evsys's own object, or an adapter over it where the reference's differs (its
``ExperimentConfig`` is the root of its YAML file, evsys's ``ReferenceConfig``; ``run_experiment``
returns the runs' results; ``get_*`` raises ``KeyError``). Names resolve on first use, so
``import evsys_sdk`` is as light as ``import evsys``.
"""

from __future__ import annotations

from evsys._lazy import lazy_exports

__version__ = "0.1.0"

_KINDS = ("algorithm", "verifier", "metric", "backend", "transform", "data_store", "log_store")

_EXPORTS = {
    # config models: the file's root is the reference's ExperimentConfig; the blocks are evsys's
    "ExperimentConfig": "evsys_sdk.yaml_files",
    "MatrixSpec": "evsys_sdk.yaml_files",
    **{
        name: "evsys.config"
        for name in (
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
        )
    },
    # protocols and run types
    **{
        name: "evsys.protocols"
        for name in (
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
            "VerificationResult",
        )
    },
    # YAML and the runner
    "load_yaml": "evsys_sdk.yaml_files",
    "dump_yaml": "evsys_sdk.yaml_files",
    "validate_yaml": "evsys_sdk.yaml_files",
    "expand_matrix": "evsys_sdk.yaml_files",
    "run_experiment": "evsys_sdk.runner",
    "Experiment": "evsys.experiment",
    # the registries: register_* / get_* / list_* for the eight kinds, and schema_for
    **{f"register_{kind}": "evsys.registry" for kind in _KINDS},
    "register_inference": "evsys.registry",
    **{f"get_{kind}": "evsys_sdk.registries" for kind in _KINDS},
    **{f"list_{kind}s": "evsys_sdk.registries" for kind in _KINDS},
    "get_inference": "evsys_sdk.registries",
    "list_inference": "evsys_sdk.registries",
    "schema_for": "evsys_sdk.registries",
    "UnknownKeyError": "evsys_sdk.registries",
    # data shapes (Harbor interchange types) and their helpers
    **{
        name: "evsys.data.types"
        for name in (
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
        )
    },
    # the dashboard client
    "DashboardClient": "evsys.tracking.client",
    "ExperimentRun": "evsys.tracking.run",
    "DashboardClientError": "evsys.tracking.errors",
    "EvsysAuthError": "evsys.tracking.errors",
    # logging
    "configure_logger": "evsys_sdk.logger",
    "get_logger": "evsys_sdk.logger",
    "set_level": "evsys_sdk.logger",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
