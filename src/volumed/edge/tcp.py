"""The API's TCP connections as the kernel sees them (Linux).

granian accepts and serves connections in its own (Rust) threads, but they are file
descriptors of this process: :func:`api_connections` finds them in ``/proc/self/fd`` and
reads each in place (a socket object over the descriptor, detached, never closed by us).
Closing goes through a duplicate taken at that moment and checked to be the same
connection (the same peer on the same local port: a TCP connection's identity), so a
descriptor number that granian closed and the process reused meanwhile (a database
connection, a file) is never mistaken for a client.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import stat
import struct
from dataclasses import dataclass

__all__ = ["Connection", "address_key", "api_connections"]

_FD_DIR = "/proc/self/fd"
_INET = (socket.AF_INET, socket.AF_INET6)
_TCP_ESTABLISHED = 1
_TCP_INFO_LEN = 104
# struct tcp_info (linux/tcp.h): tcpi_last_data_sent and tcpi_last_data_recv, in ms.
_U32 = struct.Struct("=I")
_LAST_DATA_SENT_AT = 44
_LAST_DATA_RECV_AT = 52


@dataclass(slots=True)
class Connection:
    fd: int
    port: int
    """The local port."""
    peer: tuple[str, str]
    """Address and port, the port as text (as granian's ASGI scope has it)."""
    quiet_ms: int
    """Milliseconds since the last byte either way (since the connection was set up, if
    none has been sent)."""

    def shut(self) -> bool:
        """End the connection for granian too: it sees the end of the stream and drops it.
        False if the descriptor no longer holds this connection."""
        try:
            sock = socket.socket(fileno=os.dup(self.fd))
        except OSError:
            return False
        try:
            found = sock.getsockname()[1], sock.getpeername()
            if found[0] != self.port or (str(found[1][0]), str(found[1][1])) != self.peer:
                return False
            sock.shutdown(socket.SHUT_RDWR)
            return True
        except OSError:
            return False  # gone meanwhile
        finally:
            sock.close()


def api_connections(port: int) -> list[Connection]:
    """Every established TCP connection of this process whose local port is ``port``."""
    found: list[Connection] = []
    seen: set[int] = set()
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return found
    for name in names:
        fd = int(name)
        try:
            st = os.fstat(fd)
        except OSError:
            continue  # closed meanwhile
        if not stat.S_ISSOCK(st.st_mode) or st.st_ino in seen:
            continue
        seen.add(st.st_ino)
        connection = _inspect(fd, port)
        if connection is not None:
            found.append(connection)
    return found


def _inspect(fd: int, port: int) -> Connection | None:
    try:
        # The C socket type: its family and type are plain ints (socket.socket wraps
        # them in enums, which cost more than the system calls here).
        sock = socket.SocketType(fileno=fd)
    except OSError:
        return None
    try:
        if sock.family not in _INET or sock.type != socket.SOCK_STREAM:
            return None
        if sock.getsockname()[1] != port:
            return None
        peer = sock.getpeername()  # the listening socket has none: OSError
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    finally:
        sock.detach()  # granian's descriptor: never ours to close
    if len(info) < _TCP_INFO_LEN or info[0] != _TCP_ESTABLISHED:
        return None
    (sent,) = _U32.unpack_from(info, _LAST_DATA_SENT_AT)
    (received,) = _U32.unpack_from(info, _LAST_DATA_RECV_AT)
    return Connection(fd, port, (str(peer[0]), str(peer[1])), min(sent, received))


@functools.lru_cache(maxsize=4096)
def address_key(host: str) -> str:
    """Who a connection counts against: its IPv4 address, or its IPv6 /64 (one host is
    commonly given a whole /64, so a single address would be no limit at all)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
