"""The API's listening socket, bound by volumed itself and handed to granian.

granian binds with ``SO_REUSEPORT``, so a second server started on a port already in use
silently shared it and took half the connections. volumed binds the socket without it:
the kernel then refuses a second listener on the same address, and :func:`bind` says so.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
from typing import Any

__all__ = ["AddressInUse", "bind", "fit_open_files", "granian_server"]

_SPARE_FILES = 256
"""Descriptors beyond the connections: database, images, logs, subprocess pipes."""


class AddressInUse(OSError):
    """The API address cannot be had; the message names it and what to do."""


def bind(host: str, port: int, backlog: int, *, setting: str) -> socket.socket:
    """A listening TCP socket on ``host:port``, never shared with another process;
    ``setting`` names what chooses the port, for the message if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only lets a restarted server bind past its old TIME_WAIT
        # connections; it does not let two listeners share the port (SO_REUSEPORT would).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(
                exc.errno,
                f"cannot listen on {host}:{port}: the address is already in use (another "
                f"volumed, or another program); stop that one or choose another {setting}",
            ) from None
        raise
    return sock


def granian_server(sock: socket.socket, **options: Any) -> Any:
    """granian's embedded server, serving on ``sock`` instead of binding its own."""
    from granian import _granian
    from granian.server.embed import Server

    holder_type: Any = _granian.SocketHolder  # (fd, is_uds, backlog); not in its stubs

    class _OnOurSocket(Server):
        def _init_shared_socket(self) -> None:
            # granian's own path for a socket given by descriptor (used on platforms
            # without SO_REUSEPORT); it takes a duplicate and closes it when it stops.
            holder = holder_type(os.dup(sock.fileno()), False, options["backlog"])
            self._ssp = None
            self._shd = holder
            self._sfd = holder.get_fd()
            sock.close()  # granian's copy is the only one: it stops listening when it stops

    return _OnOurSocket(**options)


def fit_open_files(connections: int) -> int:
    """Raise the open-files limit (within its hard limit) to hold ``connections`` sockets
    and the rest; the number of connections that fit. Serving more connections than there
    are descriptors would fail the database's and the images' files, not just the
    newest client's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - _SPARE_FILES))
