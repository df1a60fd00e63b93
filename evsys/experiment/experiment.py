"""``evsys.Experiment``: the command line's experiment, from Python.

An experiment is the overrides ``python -m evsys`` would be given, composed from the same config
groups, experiment files and registry. ``run()`` is what the command does with them: one arm in a
run directory, or with ``multirun`` every arm of the sweep (Hydra's sweep grammar,
``hydra.sweeper.params``, paired axes, ``n_repeats``), each validated before any starts, each
failure kept to its own arm, and the sweep aggregated into the same ``sweep_plan.json``,
``sweep_result.json`` and ``summary.md`` as the command's — with the conclusion::

    from evsys import Experiment

    result = Experiment.from_file("lora_rank").run()
    print(result.conclusion)
    result.best_arm.metrics["eval/exact_match"]

Arms run in this process, one after the other (the command's launcher may be a cluster), so the
training, the inference client and the benchmarks can be replaced by functions of the caller's —
as tests do: see :class:`~evsys.run.dependencies.ArmDependencies`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evsys import paths
from evsys.benchmarks import Benchmark
from evsys.checks import metrics_from_code
from evsys.compose.compose import compose, validate_composition
from evsys.data.references import preflight_references
from evsys.deploy.actions import attempt_deploy, deploy_best_arm, deploy_completed_run
from evsys.errors import ConfigError, Problem
from evsys.experiment.launcher import TARGET, InProcessLauncher, write_hydra_files
from evsys.experiment.results import ExperimentResult, experiment_result
from evsys.registry import Registry
from evsys.run.dependencies import ArmDependencies, InferenceFactory, TrainFn
from evsys.run.record import config_hash, redact
from evsys.run.reference_injectables import adapt_inference_factory, adapt_train_fn
from evsys.run.runner import run_arm
from evsys.sweep.aggregate import group_id, read_arm, summarize
from evsys.sweep.plan import Arm, bad_arms
from evsys.sweep.sweeper import (
    changed_since_plan,
    is_sweep_override,
    launch_arms,
    plan_arms,
    sweeper_settings,
)

log = logging.getLogger(__name__)

_YAML_SUFFIXES = (".yaml", ".yml")
EXPERIMENT_FILE_READERS = Registry(
    "experiment file format",
    "experiment_file_formats",
    builtin_modules=("evsys.reference_yaml.api",),
)
"""Readers of experiment files in another format, by format name: ``reader(path_or_config,
overrides, **options) -> Experiment``. The reference's YAML (``reference``) registers its reader
in :mod:`evsys.reference_yaml.api`, which builds on this module."""


class Experiment:
    """The overrides of one experiment, how to run them, and what replaces the real engine."""

    def __init__(
        self,
        overrides: Sequence[str] = (),
        *,
        multirun: bool = False,
        config_name: str | None = None,
        train_fn: TrainFn | None = None,
        inference_factory: InferenceFactory | None = None,
        benchmarks: Sequence[Benchmark] | None = None,
        store: Any = None,
    ):
        """``overrides`` as on the command line; ``multirun`` as ``--multirun``; ``config_name``
        the primary config (default: ``EVSYS_CONFIG_NAME``, else ``config``). ``train_fn``,
        ``inference_factory`` and ``benchmarks`` replace training, the eval client and
        ``metadata.benchmark`` in every arm (None: the real ones); evsys's signatures or the
        reference's (``train_fn(cfg) -> list[RunResult]``, ``inference_factory(RunResult,
        RunConfig)``: see :mod:`evsys.run.reference_injectables`). ``store``: the evsys
        dashboard the experiment goes to, a ``DashboardClient`` or its settings (``{api_url,
        project_id, api_key_env}``): a sweep is one experiment there, each arm a run, a single
        run an experiment with one run. None: only what the config's log store names."""
        self.overrides = [str(line) for line in overrides]
        self.multirun = multirun
        self.config_name = config_name or paths.primary_config_name()
        if isinstance(store, Mapping):  # settings: checked now, not once per arm
            from evsys.log_stores.dashboard import settings_of

            store = settings_of(store)
        self.dependencies = ArmDependencies(
            train=adapt_train_fn(train_fn),
            inference_factory=adapt_inference_factory(inference_factory),
            benchmarks=list(benchmarks) if benchmarks is not None else None,
            dashboard=store,
        )

    @classmethod
    def from_overrides(
        cls, overrides: Sequence[str] = (), *, multirun: bool = False, **options
    ) -> Experiment:
        """``python -m evsys [--multirun] OVERRIDES`` as an object (options: see ``__init__``)."""
        return cls(overrides, multirun=multirun, **options)

    @classmethod
    def from_file(
        cls,
        path_or_name: str | Path,
        overrides: Sequence[str] = (),
        *,
        multirun: bool | None = None,
        **options,
    ) -> Experiment:
        """The experiment file ``experiments/<name>.yaml`` (a name, or the file's path), plus
        ``overrides``. ``multirun=None`` sweeps when the file (or an override) defines sweep axes
        (``hydra.sweeper.params``, ``paired``, ``arms``, ``n_repeats`` > 1) and runs one arm otherwise."""
        lines = [f"experiment={experiment_option(path_or_name)}", *overrides]
        experiment = cls(lines, multirun=bool(multirun), **options)
        if multirun is None:
            experiment.multirun = experiment.has_sweep_axes()
        return experiment

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = (), **options) -> Experiment:
        """A YAML file in the reference's format (``run``, ``runs`` or ``matrix``; see
        :mod:`evsys.reference_yaml`), plus ``overrides``: a sweep when it has several arms."""
        read = EXPERIMENT_FILE_READERS.get("reference")
        return read(path, list(overrides), **options)

    def __repr__(self) -> str:
        mode = ", multirun=True" if self.multirun else ""
        return f"Experiment({self.overrides!r}{mode})"

    # -- planning ---------------------------------------------------------------------------------

    def has_sweep_axes(self) -> bool:
        """Whether the overrides or ``hydra.sweeper`` vary anything (then it is a sweep)."""
        axes, _ = sweeper_settings(self.overrides, self.config_name)
        varied = axes.params or axes.paired or axes.arms or axes.n_repeats > 1
        return bool(varied) or any(is_sweep_override(line) for line in self.overrides)

    def plan(self) -> list[Arm]:
        """Every arm, named and validated; an arm's ``problems`` say why it cannot run.

        Raises :class:`~evsys.errors.ConfigError` when the sweep axes themselves are wrong.
        """
        deps = self.dependencies
        injected = deps.train is not None or deps.benchmarks is not None
        with metrics_from_code() if injected else nullcontext():
            return self._plan()

    def _plan(self) -> list[Arm]:
        if self.multirun:
            axes, template = sweeper_settings(self.overrides, self.config_name)
            return plan_arms(self._task_overrides(), axes, template, self.config_name)
        composition = compose(self.overrides, self.config_name)
        arm = Arm(index=0, overrides=self._task_overrides(), resolved=composition.config)
        try:
            arm.config = validate_composition(composition)
        except ConfigError as exc:
            arm.problems = exc.problems
            arm.name = str(composition.config.get("name") or "run")
        else:
            arm.name = arm.config.name
            safe = redact(arm.config.model_dump(mode="json"))
            arm.config_hash, arm.group_id = config_hash(safe), group_id(safe)
        return [arm]

    # -- running ----------------------------------------------------------------------------------

    def run(self, output_dir: str | Path | None = None) -> ExperimentResult:
        """Run every arm not yet completed in ``output_dir`` and return what they found.

        ``output_dir`` is the run directory of a single run, the sweep directory of a sweep
        (None: the command's, ``hydra.run.dir`` / ``hydra.sweep.dir``). A sweep directory that
        holds a plan is resumed: completed arms are kept, the others run again. A bad config
        raises :class:`~evsys.errors.ConfigError` before anything is written; a failing arm is
        recorded ``failed`` and the others run.
        """
        arms = self.plan()
        bad = bad_arms(arms)
        if bad:
            raise _bad_arms_error(bad, len(arms), sweep=self.multirun)
        preflight_references([arm.config for arm in arms if arm.config is not None])
        directory = Path(output_dir) if output_dir is not None else self._default_dir()
        directory = directory.resolve()
        if self.multirun:
            return self._run_sweep(arms, directory)
        return self._run_single(arms[0], directory)

    def _run_single(self, arm: Arm, run_dir: Path) -> ExperimentResult:
        assert arm.config is not None
        write_hydra_files(run_dir, arm.resolved, arm.overrides)
        outcome = run_arm(
            arm.config, run_dir, overrides=arm.overrides, dependencies=self.dependencies
        )
        log.info("run %s %s in %s", arm.name, outcome.result.status, run_dir)
        deployed = _deploy("the run", lambda: deploy_completed_run(run_dir))
        row, _ = read_arm(run_dir, arm.name, arm.plan_entry())
        metadata = arm.config.metadata
        success = metadata.success_metric.model_dump() if metadata.success_metric else None
        summary = summarize(arm.config.name, run_dir, [row], success, metadata.hypothesis)
        return experiment_result(summary, {arm.name: arm.config}, **deployed)

    def _run_sweep(self, arms: list[Arm], sweep_dir: Path) -> ExperimentResult:
        changed = changed_since_plan(sweep_dir, arms)
        if changed:
            raise ConfigError(changed, header=f"cannot resume {sweep_dir}:")
        launcher = InProcessLauncher(sweep_dir, arms, self.dependencies)
        summary = launch_arms(
            sweep_dir,
            self._sweep_config(sweep_dir),
            launcher,
            arms,
            None,
            dashboard=self.dependencies.dashboard,
        )
        log.info("sweep %s: %d arms, best %s", sweep_dir, len(arms), summary.best_arm)
        deployed = _deploy("the best arm", lambda: deploy_best_arm(summary))
        return experiment_result(summary, {arm.name: arm.config for arm in arms}, **deployed)

    # -- the command's directories and multirun.yaml --------------------------------------------

    def _fixed(self) -> list[str]:
        return [line for line in self.overrides if not is_sweep_override(line)]

    def _task_overrides(self) -> list[str]:
        """The overrides of the arms: Hydra keeps ``hydra.*`` ones (the sweeper's settings, the
        directories) out of every job's overrides."""
        return [line for line in self.overrides if not _is_hydra_override(line)]

    def _default_dir(self) -> Path:
        """``hydra.run.dir`` or ``hydra.sweep.dir`` resolved as Hydra does (``${now:…}``)."""
        from hydra.core.utils import setup_globals

        setup_globals()  # Hydra's ${now:...} resolver
        key = "hydra.sweep.dir" if self.multirun else "hydra.run.dir"
        config = self._config_with_hydra()
        try:
            return Path(OmegaConf.select(config, key, throw_on_missing=True))
        except Exception as exc:
            raise ConfigError(
                Problem(
                    path=key,
                    message=f"cannot resolve the output directory: {exc}",
                    expected="run(output_dir=...)",
                )
            ) from None

    def _config_with_hydra(self) -> DictConfig:
        composition = compose(self._fixed(), self.config_name)
        if composition.hydra is None:
            raise ConfigError(composition.problems)
        hydra = OmegaConf.to_container(composition.hydra, resolve=False)
        return OmegaConf.create({**composition.config, "hydra": hydra})

    def _sweep_config(self, sweep_dir: Path) -> DictConfig:
        """What Hydra saves as ``multirun.yaml``: enough for ``evsys resume`` to replay the sweep."""
        config = self._config_with_hydra()
        hydra = config.hydra
        hydra.mode = "MULTIRUN"
        hydra.sweep.dir = str(sweep_dir)
        hydra.job.config_name = self.config_name
        hydra.overrides = {
            "hydra": [line for line in self.overrides if _is_hydra_override(line)],
            "task": self._task_overrides(),
        }
        hydra.launcher = {"_target_": TARGET}
        return config


def experiment_option(path_or_name: str | Path) -> str:
    """The ``experiment=`` option for an experiment's name or its file.

    A file must lie in a folder Hydra's ``experiment`` group reads: the project's
    ``./experiments/`` or evsys's bundled one (so the same name works on the command line).
    """
    text = str(path_or_name)
    if not text.endswith(_YAML_SUFFIXES) and "/" not in text:
        return text
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(Problem(path="experiment", message="no such experiment file", value=text))
    folders = {paths.experiments_dir().resolve(), (Path.cwd() / "experiments").resolve()}
    if path.parent not in folders or path.suffix != ".yaml":
        raise ConfigError(
            Problem(
                path="experiment",
                message="an experiment file is read from the project's experiments/ folder "
                "(or evsys's bundled one), as `experiment=<name>` on the command line",
                value=text,
                expected=f"experiments/{path.stem}.yaml under the working directory",
            )
        )
    return path.stem


def _deploy(what: str, deploy: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """The config's ``deploy`` step, as the command takes it once the runs are recorded; a
    failure is logged and returned in the result (as a failed arm is), not raised: the runs
    stand."""
    entry, error = attempt_deploy(what, deploy)
    if error is not None:
        log.error("%s", error)
    return {"deployment": entry, "deploy_error": error}


def _is_hydra_override(line: str) -> bool:
    from evsys.preflight import is_hydra_override

    return is_hydra_override(line)


def _bad_arms_error(bad: list[Arm], total: int, *, sweep: bool) -> ConfigError:
    if not sweep:
        return ConfigError(bad[0].problems)
    problems = [
        Problem(**{**problem.__dict__, "path": f"{arm.name}: {problem.path}"})
        for arm in bad
        for problem in arm.problems
    ]
    return ConfigError(
        problems, header=f"{len(bad)} of {total} arms are invalid; no arm was launched"
    )
