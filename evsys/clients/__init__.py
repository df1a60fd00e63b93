"""Hosted (frontier) inference clients: ``openai``, ``claude`` and ``gemini``, each on its
vendor's official SDK, with usage accounting (tokens, latency, cost: :mod:`evsys.clients.usage`).

The inference-client registry imports the client modules when it is first read; the SDKs
themselves are imported only when a client is built (``pip install 'evsys[openai]'``,
``'evsys[claude]'``, ``'evsys[gemini]'``, or ``'evsys[frontier]'`` for all three).
"""
