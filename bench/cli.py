"""Start-up cost of the evsys command line against a plain Hydra app, measured side by side.

    python bench/cli.py [--repeats 15]

Targets: ``python -m evsys --cfg job`` within 1.1× of a trivial ``@hydra.main`` app doing the
same; ``evsys list``/``schema``/``validate`` under 0.5 s each.

A second baseline composes the very same config tree with a plain Hydra app (evsys's conf/, its
experiments as conf/experiment/ and every registry node written out as a YAML file): the
difference to it is what evsys itself adds, the difference to the trivial app also includes
Hydra composing eight config groups instead of two keys.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL_APP = """
import hydra

@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    pass

main()
"""
TRIVIAL_CONFIG = "a: 1\nb:\n  c: 2\n"


def write_same_config_tree(root: Path) -> None:
    """evsys's composable config as plain files, for a plain Hydra app."""
    import shutil

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


def median_seconds(command: list[str], cwd: Path, repeats: int) -> float:
    subprocess.run(command, cwd=cwd, capture_output=True, check=True)  # warm caches once
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        plain, cwd = Path(tmp) / "plain", Path(tmp) / "project"
        (plain / "conf").mkdir(parents=True)
        (plain / "conf" / "config.yaml").write_text(TRIVIAL_CONFIG)
        (plain / "app.py").write_text(TRIVIAL_APP)
        cwd.mkdir()  # an empty project: evsys's bundled config only
        py = sys.executable

        same = Path(tmp) / "same"
        write_same_config_tree(same)

        baseline = median_seconds([py, "app.py", "--cfg", "job"], plain, args.repeats)
        rows = [("plain hydra app --cfg job (baseline)", baseline, None)]
        same_tree = median_seconds([py, "app.py", "--cfg", "job"], same, args.repeats)
        rows.append(("plain hydra app, evsys's config tree", same_tree, None))
        for label, command, limit in [
            ("python -m evsys --cfg job", [py, "-m", "evsys", "--cfg", "job"], None),
            ("evsys validate", [py, "-m", "evsys.cli", "validate"], 0.5),
            ("evsys list", [py, "-m", "evsys.cli", "list"], 0.5),
            (
                "evsys schema algorithm sft",
                [py, "-m", "evsys.cli", "schema", "algorithm", "sft"],
                0.5,
            ),
        ]:
            rows.append((label, median_seconds(command, cwd, args.repeats), limit))

    print(f"median of {args.repeats} runs each, same machine, same run")
    print(f"{'command':<40} {'seconds':>8} {'× baseline':>11}  target")
    evsys_cfg = next(seconds for label, seconds, _ in rows if label.startswith("python -m evsys"))
    for label, seconds, limit in rows:
        ratio = seconds / baseline
        target = (
            "≤ 1.10×" if label.startswith("python -m evsys") else (f"≤ {limit} s" if limit else "")
        )
        ok = ""
        if label.startswith("python -m evsys"):
            ok = "ok" if ratio <= 1.10 else "MISSED"
        elif limit:
            ok = "ok" if seconds <= limit else "MISSED"
        print(f"{label:<40} {seconds:>8.3f} {ratio:>10.2f}×  {target} {ok}")
    print(
        f"evsys --cfg job against the same config tree in plain Hydra: {evsys_cfg / same_tree:.2f}×"
    )


if __name__ == "__main__":
    main()
