"""Reading training rows: data stores, source loaders, transforms and the Harbor row types.

- :mod:`evsys.data.stores`: where files live (``local`` directory, ``in_memory`` dict).
- :mod:`evsys.data.sources`: ``load_rows`` dispatches on ``data.source_kind``;
  ``apply_transforms`` runs ``data.transforms`` in order.
- :mod:`evsys.data.transforms`: the built-in row transforms (``identity``, ``jsonl_to_chat``).
- :mod:`evsys.data.types`: the Harbor interchange types (chat rows, tasks, prompt examples).
- :mod:`evsys.data.jsonl`: the one JSONL parser, which reports ``file:line`` on a broken line.

Nothing here imports ``datasets`` until an ``hf_dataset`` source is actually loaded.
"""
