"""What an evolve sweep leaves besides the usual sweep outputs: ``lineage.json`` (every arm with
its generation, parents, values and error), a lineage tree and the proposer's counts in
``summary.md``, ``evolution`` in ``sweep_result.json``, and ``evolution.png`` — the best value so
far of the first objective, arm after arm, over each arm's own value (matplotlib, imported only
here; without it the summary says so)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from evsys.files import write_bytes_atomically, write_json_atomically, write_text_atomically

LINEAGE_JSON = "lineage.json"
EVOLUTION_PNG = "evolution.png"


def write_lineage(sweep_dir: Path, lineage: dict[str, Any]) -> None:
    write_json_atomically(sweep_dir / LINEAGE_JSON, lineage)


def write_plan(
    sweep_dir: Path,
    config: Any,
    settings: Any,
    context: Any,
    arms: list[Any],
    checked_by_name: dict[str, Any],
) -> None:
    """``sweep_plan.json`` of the evolve sweep: every arm proposed so far, with its generation
    and parents, and the composed config of those pre-flighted in this session."""
    from datetime import UTC, datetime

    from omegaconf import OmegaConf

    from evsys.preflight import EVOLVE_SWEEPER
    from evsys.run.record import redact
    from evsys.sweep.aggregate import SWEEP_PLAN

    entries = []
    for arm in arms:
        checked = checked_by_name.get(arm.name)
        entry = {
            "name": arm.name,
            "dir": arm.name,
            "overrides": arm.overrides,
            "config_hash": arm.proposal.get("config_hash"),
            "generation": arm.generation,
            "parent_arms": arm.parents,
        }
        if checked is not None and checked.config is not None:
            entry["group_id"] = checked.group_id
            entry["seed"] = checked.seed
            entry["config"] = redact(checked.config.model_dump(mode="json"))
        entries.append(entry)
    first = context.objectives[0]
    write_json_atomically(
        sweep_dir / SWEEP_PLAN,
        {
            "name": OmegaConf.select(config, "name") or sweep_dir.name,
            "created_at": datetime.now(UTC).isoformat(),
            "hypothesis": context.hypothesis,
            "success_metric": {"name": first.metric, "direction": first.direction},
            "launcher": OmegaConf.select(config, "hydra.launcher._target_"),
            "sweeper": EVOLVE_SWEEPER,
            "proposed": f"in generations by the {settings.proposer.kind} proposer",
            "arms": entries,
        },
    )


def finish_outputs(sweep_dir: Path, lineage: dict[str, Any]) -> None:
    from evsys.sweep.aggregate import SUMMARY_MD, SWEEP_RESULT

    curve = best_so_far(lineage)
    lineage = {**lineage, "best_so_far": curve}
    write_lineage(sweep_dir, lineage)
    plot_note = plot_evolution(lineage, sweep_dir / EVOLUTION_PNG)
    result_path = sweep_dir / SWEEP_RESULT
    result = json.loads(result_path.read_text())
    result["evolution"] = evolution_block(lineage)
    write_json_atomically(result_path, result)
    summary = (sweep_dir / SUMMARY_MD).read_text()
    write_text_atomically(
        sweep_dir / SUMMARY_MD, summary.rstrip() + "\n\n" + render(lineage, plot_note)
    )


def evolution_block(lineage: dict[str, Any]) -> dict[str, Any]:
    """``evolution`` of ``sweep_result.json`` and ``evsys results --json``: what an agent needs
    without the store — each arm's generation, parents, mutation and delta against each parent,
    every refused proposal (as written, with why), every dropped one, and why the loop stopped
    early, if it did."""
    keys = ("name", "generation", "parent_arms", "mutation", "deltas", "state", "values")
    return {
        "proposer": lineage["proposer"],
        "generations_complete": lineage["generations_complete"],
        "arms": len(lineage["arms"]),
        "proposals_illegal": lineage["proposals_illegal"],
        "best_so_far": lineage.get("best_so_far") or best_so_far(lineage),
        "lineage": LINEAGE_JSON,
        "arm_lineage": [{k: arm.get(k) for k in keys} for arm in lineage["arms"]],
        "refused": lineage.get("refused", []),
        "dropped": lineage.get("dropped", []),
        "stopped": lineage.get("stopped"),
    }


def read_evolution(sweep_dir: Path) -> dict[str, Any] | None:
    """The evolution block of an evolve sweep directory (its ``lineage.json``); None for a sweep
    of another kind, or one whose lineage.json is missing or broken."""
    try:
        lineage = json.loads((Path(sweep_dir) / LINEAGE_JSON).read_text())
        return evolution_block(lineage)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def best_so_far(lineage: dict[str, Any]) -> list[dict[str, Any]]:
    """Per generation: the best value of the first objective among every arm up to it."""
    objective = lineage["objectives"][0]
    better = max if objective["direction"] == "max" else min
    curve, best = [], None
    for generation in sorted({arm["generation"] for arm in lineage["arms"]}):
        values = [
            arm["values"][0]
            for arm in lineage["arms"]
            if arm["generation"] == generation and arm["state"] == "complete" and arm["values"]
        ]
        if values:
            best = better([*values, *([] if best is None else [best])])
        curve.append({"generation": generation, "best": best})
    return curve


def render(lineage: dict[str, Any], plot_note: str) -> str:
    """The ``## Evolution`` section of summary.md."""
    arms = lineage["arms"]
    objective = lineage["objectives"][0]
    lines = [
        "## Evolution",
        "",
        f"Proposer: {lineage['proposer']} · generations complete: "
        f"{len(lineage['generations_complete'])} · arms: {len(arms)} · "
        f"proposals refused as illegal: {lineage['proposals_illegal']} · legal ones dropped "
        f"(repeats, past what was asked): {len(lineage.get('dropped', []))}",
        "",
        "Best so far ("
        + objective["metric"]
        + "): "
        + ", ".join(f"g{p['generation']} {_fmt(p['best'])}" for p in lineage["best_so_far"]),
        "",
        plot_note,
        "",
        "### Lineage",
        "",
        "Each arm under its first parent (`(also: …)`: its other parents), with what it sets "
        "beyond the sweep's fixed overrides.",
        "",
    ]
    fixed = set(lineage.get("fixed_overrides", []))
    children: dict[str | None, list[dict[str, Any]]] = {}
    names = {arm["name"] for arm in arms}
    for arm in arms:
        parent = next((p for p in arm["parent_arms"] if p in names), None)
        children.setdefault(parent, []).append(arm)

    def walk(parent: str | None, depth: int) -> None:
        for arm in children.get(parent, []):
            others = [p for p in arm["parent_arms"] if p != parent]
            shown = _fmt(arm["values"][0]) if arm["values"] else arm["state"]
            varied = " ".join(
                line
                for line in arm["overrides"]
                if line not in fixed and not line.startswith("parent_experiment_id=")
            )
            also = f" (also: {', '.join(others)})" if others else ""
            lines.append(
                f"{'  ' * depth}- `{arm['name']}` g{arm['generation']} {shown}{also} — {varied}"
            )
            walk(arm["name"], depth + 1)

    walk(None, 0)
    return "\n".join(lines) + "\n"


def plot_evolution(lineage: dict[str, Any], path: Path) -> str:
    """The best-so-far curve into ``path``; returns summary.md's line about it."""
    done = [a for a in lineage["arms"] if a["state"] == "complete" and a["values"]]
    if not done:
        path.unlink(missing_ok=True)
        return "No evolution plot: no arm completed."
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        path.unlink(missing_ok=True)
        return "No evolution plot: matplotlib is not installed (pip install 'evsys[plot]')."
    objective = lineage["objectives"][0]
    better = max if objective["direction"] == "max" else min
    xs, ys, best_ys, best = [], [], [], None
    for position, arm in enumerate(lineage["arms"]):
        if arm["state"] == "complete" and arm["values"]:
            value = arm["values"][0]
            best = value if best is None else better(best, value)
            xs.append(position)
            ys.append(value)
        best_ys.append(best)
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter(xs, ys, s=18, alpha=0.6, label="arm")
    ax.step(range(len(best_ys)), best_ys, where="post", color="C1", label="best so far")
    for generation in sorted({a["generation"] for a in lineage["arms"]})[1:]:
        first = next(i for i, a in enumerate(lineage["arms"]) if a["generation"] == generation)
        ax.axvline(first - 0.5, color="grey", alpha=0.3, linewidth=1)
    ax.set(
        xlabel="arm (in the order proposed; lines separate generations)", ylabel=objective["metric"]
    )
    ax.legend(loc="lower right" if objective["direction"] == "max" else "upper right")
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomically(path, buffer.getvalue())
    return f"![best so far]({EVOLUTION_PNG})"


def _fmt(value: Any) -> str:
    from evsys.report import format_number

    return "—" if value is None else format_number(value)
