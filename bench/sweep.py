"""Sweep machinery costs, measured side by side in one run.

    python bench/sweep.py [--arms 1000] [--sample 30]

Pre-flight of a 1000-arm sweep (two algorithm choices × value axes) against composing each arm
with Hydra's own ``compose()``. Target: ≥ 20× faster.

A multirun of mock arms against a bare Hydra multirun is measured by ``bench/cli.py``, alternating
the two sides.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=30)
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp())  # an empty project: only evsys's bundled config
    preflight_speed(args.arms, args.sample)


if __name__ == "__main__":
    main()
