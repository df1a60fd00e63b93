"""The dashboard service (``evsys dashboard serve``): experiments, runs, their metrics and the
data they used, in one shared place. Needs ``pip install 'evsys[dashboard]'``.

``create_app`` builds the FastAPI app; nothing in core evsys imports this package except the
``evsys dashboard`` command, lazily.
"""

from __future__ import annotations

from evsys._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports("evsys.dashboard", {"create_app": "evsys.dashboard.app"})
__all__ = ["create_app"]
