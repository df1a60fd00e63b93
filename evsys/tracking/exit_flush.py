"""The exit hook: what a client never closed still had queued is sent at interpreter exit.

One ``atexit`` hook serves every open client, within one time limit for them all: a service that
is down must not hold up the interpreter's exit; what is not sent by then stays in the mirror
for ``evsys sync``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any

log = logging.getLogger("evsys.tracking")
EXIT_FLUSH_TIMEOUT_S = 2.0  # for every open client together

# The open DashboardClients (typed Any: the client imports this module, not the other way).
_open_clients: weakref.WeakSet[Any] = weakref.WeakSet()  # keeps none of them alive
_exit_hook_lock = threading.Lock()
_exit_hook_registered = False


def flushed_at_exit(client: Any) -> None:
    """Have ``client``'s queued writes sent at interpreter exit unless it is closed first; one
    ``atexit`` hook serves every client."""
    global _exit_hook_registered
    with _exit_hook_lock:
        _open_clients.add(client)
        if not _exit_hook_registered:
            atexit.register(flush_open_clients)
            _exit_hook_registered = True


def closed(client: Any) -> None:
    """``client`` was closed: it has nothing left for the exit hook to send."""
    _open_clients.discard(client)


def flush_open_clients(timeout: float = EXIT_FLUSH_TIMEOUT_S) -> None:
    """Send what every open client has queued, waiting ``timeout`` seconds for them all; warn
    once per client whose writes not all reached the service. The clients stay open: the
    mirror holds every write already, so nothing is lost by not closing them."""
    deadline = time.monotonic() + timeout
    waiting = [
        (client, client._sender.start_flush())  # every sender sends meanwhile, not in turn
        for client in list(_open_clients)
        if not client._closed and client._sender is not None
    ]
    for client, marker in waiting:
        client._sender.wait_flushed(marker, max(0.0, deadline - time.monotonic()), unless_dead=True)
        client.mirror.sync_to_disk()
        unsent = client.mirror.unsent
        if unsent:
            log.warning(
                "dashboard: %d write(s) not sent before exit stay in the mirror %s: "
                "run `evsys sync %s`",
                unsent,
                client.mirror.writes_path,
                client.settings.log_dir,
            )
