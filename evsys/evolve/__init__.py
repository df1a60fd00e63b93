"""Evolution: ``hydra/sweeper=evolve`` runs a sweep in generations, each proposed from the last.

Reading order:

- :mod:`evsys.evolve.settings` — ``hydra.sweeper``'s settings (proposer, budget, objectives);
- :mod:`evsys.evolve.space` — the search space (Hydra's sweep grammar, or the registry schemas)
  and the pre-flight that refuses a space leaving the legal one;
- :mod:`evsys.evolve.context` — the sweep's checked context: fixed overrides, space, objectives;
- :mod:`evsys.evolve.store` — every proposed arm and its result, in an RDB (SQLite or PostgreSQL);
- :mod:`evsys.evolve.proposers` — who proposes the next generation: ``optuna`` or ``llm``;
- :mod:`evsys.evolve.confine` — a proposal is data: only the space's keys, values read as data;
- :mod:`evsys.evolve.admission` — which proposals become arms: confined, validated, not repeats;
- :mod:`evsys.evolve.loop` — the generations: propose → validate → pre-flight → launch → record;
- :mod:`evsys.evolve.ancestry` — each arm's parents, mutation and delta against each parent;
- :mod:`evsys.evolve.lineage` — ``lineage.json``, the lineage tree and ``evolution.png``.

Proposers never launch anything: every proposal is confined to the search space, then composed,
validated and pre-flighted exactly like an arm of a hand-written sweep, and launched by the
configured Hydra launcher.
"""
