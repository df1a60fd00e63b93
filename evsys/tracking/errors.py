"""The client's errors: one for anything the service refused, one for a key it rejected."""

from __future__ import annotations

from evsys.errors import EvsysError


class DashboardClientError(EvsysError):
    """The dashboard refused a request (``status`` is its HTTP status), or could not be asked
    (``status`` is ``None``: unreachable, offline, or no answer in time)."""

    def __init__(self, detail: str, status: int | None = None):
        self.detail, self.status = detail, status
        super().__init__(f"dashboard: {detail}" + (f" (HTTP {status})" if status else ""))

    def __reduce__(self):  # submitit pickles failures back from workers
        return (type(self), (self.detail, self.status))


class EvsysAuthError(DashboardClientError):
    """No API key, or the service rejected it (401/403)."""


class ServiceUnreachable(DashboardClientError):
    """No answer: a connection error, a timeout or a 5xx. Writes retry later; reads raise."""
