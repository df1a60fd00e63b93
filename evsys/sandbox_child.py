"""The child side of :mod:`evsys.sandbox`: limit this process, cut its network, run the program.

Run as ``python -I -B sandbox_child.py MEMORY_BYTES CPU_SECONDS FILE_BYTES DONE_FD`` in the
sandbox's working directory, which holds ``solution.py`` and ``tests.py``. Standard library
only, and nothing of evsys is imported: the code under test must not find evsys's state here.

The first line on stderr says how the network was cut (``namespace`` or ``guard``), before any
code under test runs. ``DONE_FD`` receives one byte once the tests ran to their end, so a
solution that exits early with status 0 (``sys.exit(0)``, ``os._exit(0)``) does not pass.
"""

import ctypes
import os
import resource
import socket
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NETWORK_LINE = "evsys-sandbox-network: "


def cut_network() -> str:
    """A network namespace of its own (no interface but a loopback that is down), else a guard.

    As root with CAP_SYS_ADMIN a plain network namespace works; elsewhere a user namespace may
    (unprivileged user namespaces: most distributions, not Ubuntu 24.04's AppArmor default).
    """
    for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET):
        if _unshare(flags):
            return "namespace"
    _guard_sockets()
    return "guard"


def _unshare(flags: int) -> bool:
    unshare = getattr(os, "unshare", None)  # Python ≥ 3.12
    if unshare is not None:
        try:
            unshare(flags)
            return True
        except OSError:
            return False
    unshare = getattr(ctypes.CDLL(None, use_errno=True), "unshare", None)  # Linux only
    return unshare is not None and unshare(flags) == 0


def _guard_sockets() -> None:
    """Refuse every Internet socket from Python. A fallback only: C extensions or ``_socket``
    itself get around it; the namespace is what holds."""

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the evsys sandbox")

    class GuardedSocket(socket.socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if family in (-1, socket.AF_INET, socket.AF_INET6) and fileno is None:
                refuse()
            super().__init__(family, type, proto, fileno)

    socket.socket = GuardedSocket
    socket.create_connection = refuse
    socket.getaddrinfo = refuse


def limit(memory_bytes: int, cpu_seconds: int, file_bytes: int) -> None:
    """Hard limits too, so the code under test cannot raise them again."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> None:
    memory_bytes, cpu_seconds, file_bytes, done_fd = map(int, sys.argv[1:5])
    sys.stderr.write(NETWORK_LINE + cut_network() + "\n")
    sys.stderr.flush()
    limit(memory_bytes, cpu_seconds, file_bytes)
    sys.path.insert(0, os.getcwd())  # tests may `import solution` as well as use its names
    sys.argv = ["tests.py"]
    # The solution, then its tests, in one namespace: the tests call what the solution defines.
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    for name in ("solution.py", "tests.py"):
        with open(name, encoding="utf-8") as handle:
            exec(compile(handle.read(), name, "exec"), namespace)
    os.write(done_fd, b"1")


if __name__ == "__main__":
    main()
