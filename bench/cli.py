"""Start-up cost of the evsys command line against a plain Hydra app, measured side by side.

    python bench/cli.py [--repeats 11] [--arms 20] [--multirun-repeats 5]

Targets:
- ``python -m evsys --cfg job`` within 1.1× of a trivial ``@hydra.main`` app doing the same;
- ``evsys validate``/``list``/``schema`` under 0.5 s each;
- a multirun of mock arms, per arm, within 1.1× of a bare Hydra multirun (basic sweeper and
  launcher) of a no-op app over as many jobs.

The sides are measured alternately, round after round (the order rotating), and each figure is
the median of its rounds, so a machine that gets busier or quieter during the run moves both
sides alike. Each command's CPU time (user + system, of the process and its children) is
reported next to its wall time: on a machine other processes keep busy, wall time measures the
queue for the cores as much as the command, CPU time much less so. Every command runs with Python's bytecode cache on, as an installed package does
(``PYTHONDONTWRITEBYTECODE`` is dropped: without the cache each start compiles evsys's sources
again, ≈ 0.1 s). Per-arm figures are given two ways: the whole multirun's wall time over the
number of arms, which includes evsys's one-off pre-flight of the whole sweep, and the marginal
cost of an arm, ``(T(N arms) - T(1 arm)) / (N - 1)``.

A second baseline composes the very same config tree with a plain Hydra app (evsys's conf/, its
experiments as conf/experiment/ and every registry node written out as a YAML file): the
difference to it is what evsys itself adds, the difference to the trivial app also includes
Hydra composing eight config groups instead of two keys.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TRIVIAL_APP = """
import hydra

@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    pass

main()
"""
TRIVIAL_CONFIG = "a: 1\nb:\n  c: 2\n"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Command:
    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=lambda: ENV)
    before: Callable[[], None] | None = None
    """Run before each sample, untimed (e.g. removing the previous multirun's outputs)."""
    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)

    def run(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of one run."""
        if self.before is not None:
            self.before()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(self.argv, cwd=self.cwd, env=self.env, capture_output=True, check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples)


def measure_alternately(commands: list[Command], rounds: int) -> None:
    """Each command once to warm caches, then ``rounds`` rounds of all of them, each round
    starting one command further on."""
    for command in commands:
        command.run()
    for round_ in range(rounds):
        shift = round_ % len(commands)
        for command in commands[shift:] + commands[:shift]:
            wall, cpu = command.run()
            command.samples.append(wall)
            command.cpu_samples.append(cpu)


def write_same_config_tree(root: Path) -> None:
    """evsys's composable config as plain files, for a plain Hydra app."""
    import yaml

    from evsys.compose.nodes import build_group_nodes
    from evsys.paths import config_dir, experiments_dir

    conf = root / "conf"
    shutil.copytree(config_dir(), conf)
    shutil.copytree(experiments_dir(), conf / "experiment")
    for group, options in build_group_nodes().items():
        (conf / group).mkdir(parents=True, exist_ok=True)
        for name, node in options.items():
            (conf / group / f"{name}.yaml").write_text(yaml.safe_dump(node))
    (root / "app.py").write_text(TRIVIAL_APP)


def removing(*folders: Path) -> Callable[[], None]:
    def remove() -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    return remove


def start_up_commands(tmp: Path) -> tuple[Command, Command, list[tuple[Command, float | None]]]:
    """(baseline, same tree, [(evsys command, seconds limit or None for the ratio target)])."""
    py = sys.executable
    plain, same, project = tmp / "plain", tmp / "same", tmp / "project"
    (plain / "conf").mkdir(parents=True)
    (plain / "conf" / "config.yaml").write_text(TRIVIAL_CONFIG)
    (plain / "app.py").write_text(TRIVIAL_APP)
    write_same_config_tree(same)
    project.mkdir()  # an empty project: evsys's bundled config only
    baseline = Command(
        "plain hydra app --cfg job (baseline)", [py, "app.py", "--cfg", "job"], plain
    )
    same_tree = Command(
        "plain hydra app, evsys's config tree", [py, "app.py", "--cfg", "job"], same
    )
    evsys = [
        (Command("python -m evsys --cfg job", [py, "-m", "evsys", "--cfg", "job"], project), None),
        (Command("evsys validate", [py, "-m", "evsys.cli", "validate"], project), 0.5),
        (Command("evsys list", [py, "-m", "evsys.cli", "list"], project), 0.5),
        (
            Command(
                "evsys schema algorithm sft",
                [py, "-m", "evsys.cli", "schema", "algorithm", "sft"],
                project,
            ),
            0.5,
        ),
    ]
    return baseline, same_tree, evsys


def multirun_commands(tmp: Path, arms: int) -> dict[tuple[str, int], Command]:
    """(side, arms) → the multirun command: a bare Hydra no-op app, and evsys's mock arms."""
    py = sys.executable
    plain, project = tmp / "multirun-plain", tmp / "multirun-project"
    (plain / "conf").mkdir(parents=True)
    (plain / "conf" / "config.yaml").write_text("seed: 0\n")
    (plain / "app.py").write_text(TRIVIAL_APP)
    project.mkdir()
    # The mock backend and the tiny model (base.yaml), whatever the caller's environment says.
    env = {**ENV, "HYDRA_FULL_ERROR": "1", "EVSYS_CONFIG_NAME": "base"}
    commands = {}
    for n in (1, arms):
        seeds = f"seed=range(0,{n})"
        commands["hydra", n] = Command(
            f"bare hydra multirun, {n} no-op job(s)",
            [py, "app.py", "--multirun", seeds],
            plain,
            env,
            before=removing(plain / "multirun"),
        )
        commands["evsys", n] = Command(
            f"evsys multirun, {n} mock arm(s)",
            [py, "-m", "evsys", "--multirun", seeds, "algorithm.params.max_steps=1", "eval=none"],
            project,
            env,
            before=removing(project / "outputs"),
        )
    return commands


def report_start_up(baseline: Command, same_tree: Command, evsys: list, repeats: int) -> None:
    print(f"start-up: median of {repeats} alternating rounds, same machine, same run")
    print(f"{'command':<40} {'seconds':>8} {'× baseline':>11} {'CPU s':>7} {'× CPU':>6}  target")

    def figures(command: Command) -> str:
        ratio, cpu_ratio = (
            command.median / baseline.median,
            command.cpu_median / baseline.cpu_median,
        )
        return (
            f"{command.label:<40} {command.median:>8.3f} {ratio:>10.2f}× "
            f"{command.cpu_median:>7.3f} {cpu_ratio:>5.2f}×"
        )

    for command in (baseline, same_tree):
        print(figures(command))
    for command, limit in evsys:
        ratio = command.median / baseline.median
        if limit is None:
            target, ok = "≤ 1.10×", ratio <= 1.10
        else:
            target, ok = f"≤ {limit} s", command.median <= limit
        verdict = "ok" if ok else "MISSED"
        print(f"{figures(command)}  {target} {verdict}")
    # validate composes the same tree through Hydra before checking it: a plain Hydra app doing
    # that is its floor, whatever a limit in seconds says on a slower machine.
    for command in (evsys[0][0], evsys[1][0]):
        print(
            f"{command.label} against the same config tree in plain Hydra: "
            f"{command.median / same_tree.median:.2f}× "
            f"(CPU {command.cpu_median / same_tree.cpu_median:.2f}×)"
        )


def report_multirun(commands: dict[tuple[str, int], Command], arms: int, repeats: int) -> None:
    print(f"\nmultirun: median of {repeats} alternating rounds")
    for command in commands.values():
        print(f"{command.label:<40} {command.median:>8.3f} s  (CPU {command.cpu_median:.3f} s)")
    for clock, median in (("wall", "median"), ("CPU", "cpu_median")):

        def seconds(side: str, n: int, median: str = median) -> float:
            return getattr(commands[side, n], median)

        per_arm = {side: seconds(side, arms) / arms for side in ("hydra", "evsys")}
        marginal = {
            side: (seconds(side, arms) - seconds(side, 1)) / (arms - 1)
            for side in ("hydra", "evsys")
        }
        for label, figures in (
            (f"per arm, whole run / {arms} ({clock})", per_arm),
            (f"per additional arm ({clock})", marginal),
        ):
            ratio = figures["evsys"] / figures["hydra"]
            verdict = "ok" if ratio <= 1.10 else "MISSED"
            print(
                f"{label:<32} bare hydra {figures['hydra'] * 1000:5.0f} ms, "
                f"evsys {figures['evsys'] * 1000:5.0f} ms, {ratio:5.2f}×  target ≤ 1.10×  {verdict}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="rounds of the start-up commands")
    parser.add_argument("--arms", type=int, default=20, help="arms of the multirun comparison")
    parser.add_argument(
        "--multirun-repeats",
        type=int,
        default=5,
        help="rounds of the multirun comparison (0: skip)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        baseline, same_tree, evsys = start_up_commands(tmp)
        measure_alternately([baseline, same_tree, *(c for c, _ in evsys)], args.repeats)
        report_start_up(baseline, same_tree, evsys, args.repeats)
        if args.multirun_repeats > 0:
            multirun = multirun_commands(tmp, args.arms)
            measure_alternately(list(multirun.values()), args.multirun_repeats)
            report_multirun(multirun, args.arms, args.multirun_repeats)


if __name__ == "__main__":
    main()
