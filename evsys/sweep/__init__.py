"""Sweeps: the arms of a ``--multirun``, and what is made of their results.

``aggregate`` reads a sweep directory (``sweep_plan.json`` and each arm's ``run_result.json``) into
one summary; ``write_sweep_outputs`` writes it as ``sweep_result.json``, ``summary.md`` and a plot.
"""
