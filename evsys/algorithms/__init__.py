"""Recipes: the algorithms every backend shares one ``Config`` for.

A recipe only declares its parameters; each backend registers how it runs the recipe with
``@register_algorithm("<recipe>", backend="<backend>")``.
"""

from evsys.algorithms import (  # noqa: F401  (registers the recipes)
    agent_rl,
    combo,
    distill,
    gepa_prompt,
    rl,
    sdft,
    sft,
)
