"""evsys: LLM post-training experiments composed by Hydra and validated by registry schemas.

The public surface is ``__all__``; names resolve on first use, so ``import evsys`` stays fast and
never imports pydantic, Hydra or any training library.
"""

from __future__ import annotations

from evsys._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # config models
    "ExperimentConfig": "evsys.config",
    "RunConfig": "evsys.config",
    "DataConfig": "evsys.config",
    "ModelConfig": "evsys.config",
    "AlgorithmConfig": "evsys.config",
    "BackendConfig": "evsys.config",
    "EvalConfig": "evsys.config",
    "Metadata": "evsys.config",
    "BenchmarkSpec": "evsys.config",
    "SuccessMetric": "evsys.config",
    "ContinualConfig": "evsys.config",
    "ContinualStage": "evsys.config",
    "MetricSpec": "evsys.config",
    "VerifierSpec": "evsys.config",
    "TransformSpec": "evsys.config",
    "InferenceSpec": "evsys.config",
    "EnvironmentSpec": "evsys.config",
    "DataStoreSpec": "evsys.config",
    "LogStoreSpec": "evsys.config",
    "DeploySpec": "evsys.config",
    "CallbackSpec": "evsys.config",
    # protocols and run records
    "Algorithm": "evsys.protocols",
    "Backend": "evsys.protocols",
    "DataStore": "evsys.protocols",
    "InferenceClient": "evsys.protocols",
    "LogStore": "evsys.protocols",
    "Metric": "evsys.protocols",
    "Transform": "evsys.protocols",
    "Verifier": "evsys.protocols",
    "Deployer": "evsys.deploy.protocol",
    "Deployment": "evsys.deploy.protocol",
    "RunContext": "evsys.protocols",
    "RunResult": "evsys.protocols",
    "Callback": "evsys.callbacks",
    "Stop": "evsys.callbacks",
    "VerificationResult": "evsys.protocols",
    # agent harnesses
    "Environment": "evsys.agents",
    "StepResult": "evsys.agents",
    "Tool": "evsys.agents",
    # registry
    "register_algorithm": "evsys.registry",
    "register_backend": "evsys.registry",
    "register_metric": "evsys.registry",
    "register_verifier": "evsys.registry",
    "register_transform": "evsys.registry",
    "register_inference": "evsys.registry",
    "register_data_store": "evsys.registry",
    "register_log_store": "evsys.registry",
    "register_environment": "evsys.registry",
    "register_deployer": "evsys.registry",
    "register_callback": "evsys.registry",
    "registry_for": "evsys.registry",
    "resolve_algorithm": "evsys.registry",
    # composing and running
    "compose": "evsys.compose.compose",
    "compose_and_validate": "evsys.compose.compose",
    "validate_experiment": "evsys.validation",
    "run_arm": "evsys.run.runner",
    # eval harness
    "evaluate_model": "evsys.harness",
    "score_rows": "evsys.harness",
    "ModelEvalConfig": "evsys.harness",
    "AliasMatcher": "evsys.harness",
    "call_with_retry": "evsys.harness",
    "RetryReport": "evsys.harness",
    "RetryFailure": "evsys.harness",
    "EvalSummary": "evsys.harness",
    "EvalArtifacts": "evsys.harness",
    "format_summary_markdown": "evsys.harness",
    "qwen_chat_prompt": "evsys.harness",
    "qwen3_chat_template_prompt": "evsys.harness",
    "extract_predicted_slug": "evsys.harness",
    "load_eval_dataset": "evsys.harness",
    "DEFAULT_SYSTEM": "evsys.harness",
    "DEFAULT_SYSTEM_NO_THINK": "evsys.harness",
    "Experiment": "evsys.experiment",
    "ExperimentResult": "evsys.experiment",
    "ArmResult": "evsys.experiment",
    # the dashboard client
    "DashboardClient": "evsys.tracking.client",
    "ExperimentRun": "evsys.tracking.run",
    "DashboardClientError": "evsys.tracking.errors",
    "EvsysAuthError": "evsys.tracking.errors",
    # errors
    "EvsysError": "evsys.errors",
    "ConfigError": "evsys.errors",
    "DataError": "evsys.errors",
    "BackendError": "evsys.errors",
    "Problem": "evsys.errors",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
