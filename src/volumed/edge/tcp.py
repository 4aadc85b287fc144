"""The API's TCP connections as the kernel sees them (Linux).

granian accepts and serves connections in its own (Rust) threads, but they are file
descriptors of this process: :func:`api_connections` finds them in ``/proc/self/fd``,
each through a duplicate of its descriptor. What is read and what is closed is always
that duplicate's socket, so a descriptor number that granian closed and the process
reused meanwhile (a database connection, a file) is never mistaken for a client.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["Connection", "api_connections", "address_key"]

_FD_DIR = "/proc/self/fd"
_TCP_ESTABLISHED = 1
_TCP_INFO_LEN = 104
# struct tcp_info (linux/tcp.h): tcpi_last_data_sent and tcpi_last_data_recv, in ms.
_LAST_DATA_SENT = struct.Struct("=I")
_LAST_DATA_SENT_AT = 44
_LAST_DATA_RECV_AT = 52


@dataclass(slots=True)
class Connection:
    sock: socket.socket
    """Our own duplicate of the connection's descriptor: close it when done."""
    peer: tuple[str, str]
    """Address and port, the port as text (as granian's ASGI scope has it)."""
    quiet_ms: int
    """Milliseconds since the last byte either way (since the connection was set up, if
    none has been sent)."""

    def shut(self) -> None:
        """End the connection for granian too: it sees the end of the stream and drops it."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def release(self) -> None:
        self.sock.close()


def api_connections(port: int) -> list[Connection]:
    """Every established TCP connection of this process whose local port is ``port``."""
    found: list[Connection] = []
    seen: set[str] = set()
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"{_FD_DIR}/{name}")
        except OSError:
            continue  # closed meanwhile
        if not target.startswith("socket:") or target in seen:
            continue
        seen.add(target)
        connection = _inspect(int(name), port)
        if connection is not None:
            found.append(connection)
    return found


def _inspect(fd: int, port: int) -> Connection | None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            raise OSError("not a TCP socket")
        if sock.getsockname()[1] != port:
            raise OSError("not the API's port")
        peer = sock.getpeername()  # the listening socket has none: OSError
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        if len(info) < _TCP_INFO_LEN or info[0] != _TCP_ESTABLISHED:
            raise OSError("not established")
    except OSError:
        sock.close()
        return None
    (sent,) = _LAST_DATA_SENT.unpack_from(info, _LAST_DATA_SENT_AT)
    (received,) = _LAST_DATA_SENT.unpack_from(info, _LAST_DATA_RECV_AT)
    return Connection(sock, (str(peer[0]), str(peer[1])), min(sent, received))


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
