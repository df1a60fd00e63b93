"""The base models the local backend loads: moved to :mod:`evsys.backends.models`, shared with
the tinker backend and local deploys; the names stay importable from here."""

from __future__ import annotations

from evsys.backends.models import SMOLLM2_135M as SMOLLM2_135M
from evsys.backends.models import SMOLLM2_CHAT_TEMPLATE as SMOLLM2_CHAT_TEMPLATE
from evsys.backends.models import TINY_CHAT_TEMPLATE as TINY_CHAT_TEMPLATE
from evsys.backends.models import TINY_LLAMA as TINY_LLAMA
from evsys.backends.models import load_model as load_model
from evsys.backends.models import quiet_libraries as quiet_libraries
from evsys.backends.models import require_local_stack as require_local_stack
from evsys.backends.models import resolve_model_path as resolve_model_path
