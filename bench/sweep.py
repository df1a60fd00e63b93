"""Sweep machinery costs, measured side by side in one run.

    python bench/sweep.py [--arms 1000] [--sample 30] [--mock-arms 20]

1. Pre-flight of a 1000-arm sweep (two algorithm choices × value axes) against composing each
   arm with Hydra's own ``compose()``. Target: ≥ 20× faster.
2. A multirun of mock arms against a bare Hydra multirun of a no-op app with as many arms.
   Target: ≤ 1.2× the wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOOP_APP = """
import hydra

@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    pass

main()
"""


def preflight_speed(n_arms: int, sample: int) -> None:
    from hydra import compose, initialize_config_dir

    from evsys.compose.compose import config_loader
    from evsys.paths import config_dir
    from evsys.sweep.plan import SweepAxes, enumerate_arms, preflight

    per_algorithm = n_arms // 2
    ranks, seeds = per_algorithm // 10, 10
    arguments = [
        "algorithm=sft,rl",
        f"algorithm.params.lora_rank=range(1,{ranks + 1})",
        f"seed=range(0,{seeds})",
    ]
    arms = enumerate_arms(arguments, SweepAxes())
    preflight(arms[:4])  # imports and first compositions out of the measurement

    start = time.perf_counter()
    checked = preflight(arms)
    fast = (time.perf_counter() - start) / len(arms)
    assert not any(arm.problems for arm in checked)

    config_loader()  # publish the registry's group options, as the evsys app does
    step = max(1, len(arms) // sample)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        compose(config_name="config", overrides=arms[0])
        start = time.perf_counter()
        for overrides in arms[::step]:
            compose(config_name="config", overrides=overrides)
        hydra = (time.perf_counter() - start) / len(arms[::step])

    print(
        f"pre-flight of {len(arms)} arms: {fast * 1000:.2f} ms/arm (total {fast * len(arms):.1f} s)"
    )
    print(f"hydra compose() per arm (mean of {len(arms[::step])}): {hydra * 1000:.1f} ms/arm")
    print(
        f"speed-up: {hydra / fast:.1f}×   target ≥ 20×  {'ok' if hydra / fast >= 20 else 'MISSED'}"
    )


def multirun_overhead(n_arms: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain, project = Path(tmp) / "plain", Path(tmp) / "project"
        (plain / "conf").mkdir(parents=True)
        (plain / "conf" / "config.yaml").write_text("seed: 0\n")
        (plain / "app.py").write_text(NOOP_APP)
        project.mkdir()
        env = {**os.environ, "HYDRA_FULL_ERROR": "1"}

        def timed(command: list[str], cwd: Path) -> float:
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
            return time.perf_counter() - start

        seeds = f"seed=range(0,{n_arms})"
        bare = timed([sys.executable, "app.py", "--multirun", seeds], plain)
        evsys = timed(
            [
                sys.executable,
                "-m",
                "evsys",
                "--multirun",
                seeds,
                "algorithm.params.max_steps=1",
                "eval=none",
            ],
            project,
        )
    ratio = evsys / bare
    print(f"multirun of {n_arms} arms: bare hydra no-op {bare:.2f} s, evsys mock {evsys:.2f} s")
    print(f"ratio: {ratio:.2f}×   target ≤ 1.2×  {'ok' if ratio <= 1.2 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=30)
    parser.add_argument("--mock-arms", type=int, default=20)
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp())  # an empty project: only evsys's bundled config
    preflight_speed(args.arms, args.sample)
    multirun_overhead(args.mock_arms)


if __name__ == "__main__":
    main()
