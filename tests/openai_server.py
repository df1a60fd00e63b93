"""A local OpenAI-compatible chat-completions server for tests: the remote API's test double.

It speaks the real protocol (``POST /v1/chat/completions``, JSON in and out, Bearer auth, HTTP
error codes, ``Retry-After``) on 127.0.0.1, fails on purpose when told to, and answers arithmetic
questions ("What is 50 + 34?") with the right sum, so a correct client scores 1.0 on them. Its
plumbing is shared with the other vendors' servers in :mod:`vendor_servers`.
"""

from __future__ import annotations

from vendor_servers import FAILURES, OpenAIServer, arithmetic_answer

FakeChatServer = OpenAIServer

__all__ = ["FAILURES", "FakeChatServer", "arithmetic_answer"]
