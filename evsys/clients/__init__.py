"""Hosted (frontier) inference clients: ``openai``, ``claude`` and ``gemini``, each on its
vendor's official SDK, with usage accounting (tokens, latency, cost).

The modules register their clients when the inference-client registry is first read; the SDKs
themselves are imported only when a client is built (``pip install 'evsys[openai]'``,
``'evsys[claude]'``, ``'evsys[gemini]'``, or ``'evsys[frontier]'`` for all three).
"""

from evsys.clients import claude, gemini, openai_chat

__all__ = ["claude", "gemini", "openai_chat"]
