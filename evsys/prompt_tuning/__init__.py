"""Prompt tuning: searching for the system prompt that makes a model score best, no weights moved.

The ``gepa_prompt`` recipe (:mod:`evsys.algorithms.gepa_prompt`) runs the search with the
``gepa`` package; this package holds what the rest of evsys needs to know about its result and
never imports ``gepa`` itself:

- :mod:`.system_prompt`: putting a system prompt into rows, and reading the one a run found
  (``artifacts["best_prompt"]``), which the run's eval, its benchmarks and later ``combo``
  phases use;
- :mod:`.examples`: every row shape (chat, prompt/answer, harbor task, prompt dataset) as a row
  the task model answers and a verifier or metric scores;
- :mod:`.scoring`: one score and a line of feedback per answer, for the reflection model.

The adapter between these and GEPA's engine lives in :mod:`.adapter` and :mod:`.history`,
imported only when the recipe runs.
"""
