"""Multi-turn agent harnesses: train a model inside an environment it acts in, turn by turn.

An :class:`Environment` (``reset(task)``, then ``step(action)`` until done) is a registered
extension (``@register_environment``, entry-point group ``evsys.environments``) with a ``Config``
per environment; the ``agent_rl`` recipe runs episodes in it on every backend
(:mod:`evsys.agents.episode`), rewards them from the environment or a verifier, and trains only
the model's own tokens (:mod:`evsys.agents.rendering` masks the rest).
"""

from evsys.agents.protocol import Environment, StepResult, Tool

__all__ = ["Environment", "StepResult", "Tool"]
