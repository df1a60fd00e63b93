"""The mock backend: instant, deterministic by seed, and shaped like a real engine.

It trains a toy policy that memorises rows and answers new prompts from the most similar one it
has seen, so metrics move with training the way they would on a real model: per-step losses and
rewards, checkpoints as files, and a sampling client that eval loads from the final checkpoint.
"""

from evsys.backends.mock import agent_rl, backend, distill, inference, rl, sft  # noqa: F401
