"""The tinker backend: the same recipes on a Tinker service (the hosted API, or any server that
speaks it) through the official ``tinker`` SDK.

Importing this package registers the backend, its recipes and its inference client without
importing ``tinker`` (which imports torch): the SDK loads when a run connects. The API key comes
from an environment variable (``TINKER_API_KEY`` by default), never from a config.
"""

from evsys.backends.tinker import agent_rl, backend, inference, rl, sft  # noqa: F401
