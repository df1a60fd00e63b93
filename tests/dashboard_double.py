"""A scripted stand-in for the dashboard's SDK endpoints, for the client's failure paths.

It speaks just ``GET /sdk/whoami`` and ``POST /sdk/writes`` (idempotent by write id, as the
service is), and fails on request: ``fail_next`` answers the next write batches with the given
statuses (``503``, ``500``, ``401``), cuts the connection (``reset``) or answers nothing until
``released`` is set (``hang``: the whole double hangs from then on) or answers after a while (``slow:<seconds>``); ``refuse`` answers 422 for any batch holding a write it matches.
The service itself (``tests/dashboard_server.py``) is what the client is tested against for what
it stores; this double only makes failures happen on cue.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from tests.vendor_servers import JSONHandler

PREFIX = "/api/dashboard/api"


class ScriptedDashboard:
    def __init__(self, key: str = "good-key", port: int = 0):
        self.key = key
        self.fail_next: list[str] = []
        self.refuse: Callable[[dict[str, Any]], bool] = lambda write: False
        self.writes: dict[str, dict[str, Any]] = {}  # id → write, each once
        self.batches: list[int] = []  # the size of every batch that arrived, answered or not
        self.released = threading.Event()  # ends every "hang"
        self.hung = False  # set by a "hang": every request waits for released
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def steps(self, run_id: str) -> dict[tuple[int, str], float]:
        """(step, name) → value, a later write replacing an earlier one, as the service does."""
        found: dict[tuple[int, str], float] = {}
        for write in sorted(self.writes.values(), key=lambda w: w["time"]):
            if write["op"] == "run.steps" and write["data"]["run_id"] == run_id:
                for entry in write["data"]["steps"]:
                    for name, value in entry["metrics"].items():
                        found[(entry["step"], name)] = value
        return found

    def __enter__(self) -> ScriptedDashboard:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _handler(double: ScriptedDashboard) -> type[JSONHandler]:
    class Handler(JSONHandler):
        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {double.key}":
                return True
            self._json(401, {"detail": "unknown or revoked API key"})
            return False

        def do_GET(self) -> None:
            if double.hung:
                double.released.wait()
                return
            if self.path.startswith(f"{PREFIX}/sdk/whoami") and self._authorised():
                self._json(200, {"project_id": "p1", "project_name": "demo"})
            elif not self.path.startswith(f"{PREFIX}/sdk/whoami"):
                self._json(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            writes = body["writes"]
            with double.lock:
                double.batches.append(len(writes))
                failure = double.fail_next.pop(0) if double.fail_next else None
            if failure == "hang" or double.hung:
                double.hung = True
                double.released.wait()
                return
            if failure is not None and failure.startswith("slow:"):
                time.sleep(float(failure.removeprefix("slow:")))
                failure = None
            if failure == "reset":  # RST instead of an answer
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()
                return
            if failure is not None:
                self._json(int(failure), {"detail": f"scripted {failure}"})
                return
            if not self._authorised():
                return
            for index, write in enumerate(writes):
                if double.refuse(write):
                    self._json(422, {"detail": f"writes[{index}].data: refused on cue"})
                    return
            with double.lock:
                new = [w for w in writes if w["id"] not in double.writes]
                double.writes.update((w["id"], w) for w in new)
            self._json(200, {"applied": len(new), "duplicates": len(writes) - len(new)})

    return Handler
