"""Starting a tool with glibc's ``posix_spawn``, the GIL released.

``os.posix_spawn`` and ``subprocess.Popen`` hold the GIL until the child has exec'd,
which on a loaded host means until the scheduler runs the child: under a load of
creates, 17 % of the GIL-held time of ``volumed serve`` was spent inside
``os.posix_spawn`` for the formats' ``mke2fs`` (bench/README.md, issue 15), while no
request moved. Called through ctypes, which releases the GIL around foreign calls,
from a worker thread, the same spawn holds up nothing. glibc's
``posix_spawn_file_actions_addclosefrom_np`` also closes every descriptor above
stderr in the child, as Popen's ``close_fds`` does.

:func:`available` is False where this libc lacks any of it; the caller then starts
tools another way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping, Sequence

__all__ = ["available", "spawn"]

# Opaque glibc types, given room to spare (glibc 2.36 on x86-64: 80, 336 and 128 bytes).
_ACTIONS_BYTES = 256
_ATTR_BYTES = 1024
_SIGSET_BYTES = 256
# <spawn.h>
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08

_FUNCTIONS = (
    "posix_spawn",
    "posix_spawn_file_actions_init",
    "posix_spawn_file_actions_destroy",
    "posix_spawn_file_actions_addopen",
    "posix_spawn_file_actions_adddup2",
    "posix_spawn_file_actions_addclosefrom_np",
    "posix_spawnattr_init",
    "posix_spawnattr_destroy",
    "posix_spawnattr_setflags",
    "posix_spawnattr_setsigdefault",
    "posix_spawnattr_setsigmask",
    "sigemptyset",
    "sigaddset",
)


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    if not all(hasattr(libc, function) for function in _FUNCTIONS):
        return None
    for function in _FUNCTIONS:
        getattr(libc, function).restype = ctypes.c_int
    libc.posix_spawn.argtypes = [
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_char_p),
    ]
    libc.posix_spawn_file_actions_addopen.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint,
    ]
    libc.posix_spawn_file_actions_adddup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    libc.posix_spawn_file_actions_addclosefrom_np.argtypes = [ctypes.c_void_p, ctypes.c_int]
    libc.posix_spawnattr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
    libc.sigaddset.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return libc


_libc = _load()


def available() -> bool:
    return _libc is not None


def spawn(
    path: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdout: int,
    stderr: int,
    default_signals: Sequence[int],
) -> int:
    """Start ``path`` with ``argv`` and exactly ``env``: stdin from /dev/null, stdout
    and stderr to the given descriptors, no other descriptor, no blocked signal, and
    ``default_signals`` back to their default action. Returns the child's pid; raises
    OSError (the child's exec error included) like ``os.posix_spawn``. Blocks until
    the child has exec'd, without the GIL."""
    libc = _libc
    if libc is None:
        raise OSError("posix_spawn through libc is not available here")
    actions = ctypes.create_string_buffer(_ACTIONS_BYTES)
    attr = ctypes.create_string_buffer(_ATTR_BYTES)
    _check(libc.posix_spawn_file_actions_init(actions), path)
    try:
        _check(libc.posix_spawnattr_init(attr), path)
        try:
            _check(
                libc.posix_spawn_file_actions_addopen(
                    actions, 0, os.devnull.encode(), os.O_RDONLY, 0
                ),
                path,
            )
            _check(libc.posix_spawn_file_actions_adddup2(actions, stdout, 1), path)
            _check(libc.posix_spawn_file_actions_adddup2(actions, stderr, 2), path)
            _check(libc.posix_spawn_file_actions_addclosefrom_np(actions, 3), path)
            to_default = _sigset(libc, default_signals)
            none_blocked = _sigset(libc, ())
            _check(libc.posix_spawnattr_setsigdefault(attr, to_default), path)
            _check(libc.posix_spawnattr_setsigmask(attr, none_blocked), path)
            _check(libc.posix_spawnattr_setflags(attr, _SETSIGDEF | _SETSIGMASK), path)
            pid = ctypes.c_int()
            _check(
                libc.posix_spawn(
                    ctypes.byref(pid),
                    path.encode(),
                    actions,
                    attr,
                    _strings([os.fsencode(arg) for arg in argv]),
                    _strings([f"{key}={value}".encode() for key, value in env.items()]),
                ),
                path,
            )
            return pid.value
        finally:
            libc.posix_spawnattr_destroy(attr)
    finally:
        libc.posix_spawn_file_actions_destroy(actions)


def _sigset(libc: ctypes.CDLL, signals: Sequence[int]) -> ctypes.Array[ctypes.c_char]:
    found = ctypes.create_string_buffer(_SIGSET_BYTES)
    libc.sigemptyset(found)
    for number in signals:
        libc.sigaddset(found, number)
    return found


def _strings(items: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated ``char *[]``."""
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


def _check(code: int, path: str) -> None:
    # posix_spawn and its helpers return an errno value; they do not set errno.
    if code != 0:
        raise OSError(code, os.strerror(code), path)
