"""Writing an archive's members under a private directory without following any link.

:class:`TreeWriter` never builds a host path from a tenant's name: every member is
reached from the root's file descriptor one component at a time, each opened with
``O_NOFOLLOW`` relative to its parent (``openat``), and every file, link and directory is
made relative to its parent's descriptor. So a symbolic link in the archive is only ever
*made*, never followed (a member whose path goes through one is refused), and a path of
any length works, whatever ``PATH_MAX`` says about the host's own path to the root.

The limits are checked before anything is written: at most ``max_depth`` components,
``max_path_bytes`` bytes in a path or a link target, 255 bytes in a component (ext4's
own limit). Device nodes and FIFOs are the caller's to refuse.

Directory attributes are applied when the archive leaves the directory, so a read-only
directory can still be filled and its mtime is the archive's. Only the directories on
the path of the latest member are open (a stack as deep as the tree, not as wide), so
memory does not grow with the number of entries. A member that comes back to a
directory already left reopens it and puts its mode and mtime back afterwards.

Owners are set (numeric) when running as root. No file on the host gets a setuid or
setgid bit: a regular file that has one in the archive is written without it and gets a
second hard link, ``<marks>/<n>`` (``marks`` a random name at the root, ``n`` its number),
and its mode goes in :attr:`TreeWriter.special_modes`. After ``mke2fs -d`` the caller sets
each mode on the image's inode through that link and removes the links and the
directory with ``debugfs`` (:func:`special_bits_script`): debugfs only ever sees names
volumed made, never a tenant's.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tarfile
from dataclasses import dataclass
from typing import IO

__all__ = ["ArchiveError", "FileContent", "TreeWriter", "member_parts", "special_bits_script"]

_NAME_MAX = 255
_COPY = 1 << 20
_ZEROS = bytes(_COPY)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SHOWN = 80
_SPECIAL = stat.S_ISUID | stat.S_ISGID
_NO_ID = 2**32 - 1
"""``(uid_t) -1``: "leave unchanged" to chown; anything from there on is no owner."""
_MAX_MTIME = 2**34 - 1
"""The last second ext4 can store (year 2446); a pax header may claim any number."""


class ArchiveError(Exception):
    """The stream is not a tar archive volumed accepts; the message says which member."""


def shown(name: str) -> str:
    """A member's name for a message: quoted, and cut short if long."""
    if len(name) > _SHOWN:
        name = name[: _SHOWN // 2] + "…" + name[-_SHOWN // 2 :]
    return f"'{name}'"


def member_parts(path: str, member: str, *, max_depth: int, max_path_bytes: int) -> list[str]:
    """The components of ``path`` (a member's name or a hard link's target), checked."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"Archive member {shown(member)} has a '..' component in its path")
    if len(parts) > max_depth:
        raise ArchiveError(
            f"Archive member {shown(member)} is {len(parts)} levels deep; volumed imports "
            f"at most {max_depth} (setting import_max_depth)"
        )
    size = len(os.fsencode("/".join(parts)))
    if size > max_path_bytes:
        raise ArchiveError(
            f"Archive member {shown(member)} has a path of {size} bytes; volumed imports at "
            f"most {max_path_bytes} (setting import_max_path_bytes)"
        )
    for part in parts:
        if "\0" in part:
            raise ArchiveError(f"Archive member {shown(member)} has a NUL byte in its path")
        if len(os.fsencode(part)) > _NAME_MAX:
            raise ArchiveError(
                f"Archive member {shown(member)} has a name longer than {_NAME_MAX} bytes"
            )
    return parts


@dataclass(frozen=True, slots=True)
class FileContent:
    """A regular file's bytes: ``source`` holds the ``extents`` (offset, length) one after
    the other; one extent ``(0, size)`` unless the file is sparse."""

    source: IO[bytes]
    extents: list[tuple[int, int]]


@dataclass(slots=True)
class _Attrs:
    mode: int
    mtime_ns: int
    owner: tuple[int, int] | None


@dataclass(slots=True)
class _OpenDir:
    name: str
    fd: int
    attrs: _Attrs | None
    """What to set when the archive leaves the directory (None: leave it as it is)."""


_FILE_CAPABILITIES = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4)
"""CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID: with these a service user writes
the tree as root would (owners, modes, setgid bits, entries in directories it does not
own). deploy/volumed.service grants exactly these to its dedicated user."""


def _has_file_capabilities() -> bool:
    """Whether this process holds all of :data:`_FILE_CAPABILITIES` (effective set)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    effective = int(line.split()[1], 16)
                    return effective & _FILE_CAPABILITIES == _FILE_CAPABILITIES
    except OSError:
        return False
    return False


class TreeWriter:
    """Members written under ``root`` (an existing, empty, private directory)."""

    def __init__(self, root: str, *, max_depth: int, max_path_bytes: int) -> None:
        self._max_depth = max_depth
        self._max_path_bytes = max_path_bytes
        self._as_root = os.geteuid() == 0 or _has_file_capabilities()
        self._stack = [_OpenDir("", os.open(root, _DIR_FLAGS), None)]
        self.marks = f".volumed-modes-{secrets.token_hex(16)}"
        """The directory (at the root) of the links to files with setuid/setgid bits."""
        self.special_modes: list[int] = []
        """The mode of ``<marks>/<n>`` at index n."""
        self._marks_fd: int | None = None

    def parts(self, member: tarfile.TarInfo) -> list[str]:
        return member_parts(
            member.name,
            member.name,
            max_depth=self._max_depth,
            max_path_bytes=self._max_path_bytes,
        )

    def add(self, member: tarfile.TarInfo, parts: list[str], data: FileContent | None) -> None:
        """Write ``member`` (its checked ``parts``); ``data`` is a regular file's content."""
        if not parts:
            if not member.isdir():
                raise ArchiveError(f"Archive member {shown(member.name)} is not a directory")
            self._stack[0].attrs = self._attrs(member)
            return
        parent = self._enter(parts[:-1], member.name)
        name = parts[-1]
        if member.isdir():
            self._push_dir(parent, name, member)
        elif member.issym():
            self._symlink(parent, name, member)
        elif member.islnk():
            self._hard_link(parent, name, member)
        else:
            assert data is not None
            self._file(parent, name, member, data)

    def close(self) -> None:
        """Apply the attributes of every directory still open, deepest first."""
        while self._stack:
            self._leave()

    def abandon(self) -> None:
        """Close every descriptor without touching anything (after a failure)."""
        while self._stack:
            os.close(self._stack.pop().fd)
        if self._marks_fd is not None:
            os.close(self._marks_fd)
            self._marks_fd = None

    # ---- directories

    def _enter(self, parts: list[str], member: str) -> int:
        """The descriptor of the directory ``parts`` (made if missing): leave the open
        directories that are not on its path, then open the rest of it."""
        common = 0
        for have, want in zip(self._stack[1:], parts, strict=False):
            if have.name != want:
                break
            common += 1
        while len(self._stack) > common + 1:
            self._leave()
        for name in parts[common:]:
            top = self._stack[-1].fd
            try:
                os.mkdir(name, 0o700, dir_fd=top)
                attrs: _Attrs | None = _Attrs(0o755, 0, None)
                fd = self._open_dir(top, name, member)
            except FileExistsError:
                fd = self._open_dir(top, name, member)
                attrs = self._reopened(fd)
            self._stack.append(_OpenDir(name, fd, attrs))
        return self._stack[-1].fd

    def _push_dir(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            if not _is_dir(parent, name):
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o700, dir_fd=parent)
        fd = self._open_dir(parent, name, member.name)
        if not self._as_root:
            os.fchmod(fd, 0o700)
        self._stack.append(_OpenDir(name, fd, self._attrs(member)))

    def _open_dir(self, parent: int, name: str, member: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ArchiveError(
                    f"Archive member {shown(member)} has a path through a symbolic link or "
                    "a file; volumed does not follow links when importing"
                ) from None
            raise

    def _reopened(self, fd: int) -> _Attrs:
        """A directory made or left earlier: keep its mode and mtime across new entries."""
        st = os.fstat(fd)
        if not self._as_root:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
        return _Attrs(stat.S_IMODE(st.st_mode), st.st_mtime_ns, None)

    def _leave(self) -> None:
        top = self._stack.pop()
        try:
            if top.attrs is not None:
                if top.attrs.owner is not None:
                    os.fchown(top.fd, *top.attrs.owner)
                os.fchmod(top.fd, top.attrs.mode)
                if top.attrs.mtime_ns:
                    os.utime(top.fd, ns=(top.attrs.mtime_ns, top.attrs.mtime_ns))
        finally:
            os.close(top.fd)

    # ---- files and links

    def _file(self, parent: int, name: str, member: tarfile.TarInfo, data: FileContent) -> None:
        fd = self._create(parent, name, member.name)
        try:
            _copy(data, fd, member.size, member.name)
            attrs = self._attrs(member)
            if attrs.owner is not None:
                os.fchown(fd, *attrs.owner)
            os.fchmod(fd, attrs.mode & ~_SPECIAL)
            os.utime(fd, ns=(attrs.mtime_ns, attrs.mtime_ns))
        finally:
            os.close(fd)
        if attrs.mode & _SPECIAL:
            self._mark(parent, name, attrs.mode)

    def _mark(self, parent: int, name: str, mode: int) -> None:
        if self._marks_fd is None:
            root = self._stack[0].fd
            os.mkdir(self.marks, 0o700, dir_fd=root)
            self._marks_fd = os.open(self.marks, _DIR_FLAGS, dir_fd=root)
        os.link(name, str(len(self.special_modes)), src_dir_fd=parent,
                dst_dir_fd=self._marks_fd, follow_symlinks=False)  # fmt: skip
        self.special_modes.append(mode)

    def _create(self, parent: int, name: str, member: str) -> int:
        try:
            return os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            self._replace(parent, name, member)
            return os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)

    def _symlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        target = member.linkname
        if len(os.fsencode(target)) > self._max_path_bytes:
            raise ArchiveError(
                f"Archive member {shown(member.name)} is a symbolic link to a path longer "
                f"than {self._max_path_bytes} bytes (setting import_max_path_bytes)"
            )
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            self._replace(parent, name, member.name)
            os.symlink(target, name, dir_fd=parent)
        attrs = self._attrs(member)
        if attrs.owner is not None:
            os.chown(name, *attrs.owner, dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=(attrs.mtime_ns, attrs.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _hard_link(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        parts = member_parts(
            member.linkname,
            member.name,
            max_depth=self._max_depth,
            max_path_bytes=self._max_path_bytes,
        )
        missing = ArchiveError(
            f"Archive member {shown(member.name)} is a hard link to "
            f"{shown(member.linkname)}, which is not a file earlier in the archive"
        )
        if not parts:
            raise missing
        source_dir = self._walk(parts[:-1])
        if source_dir is None:
            raise missing
        try:
            found = os.stat(parts[-1], dir_fd=source_dir, follow_symlinks=False)
            if stat.S_ISDIR(found.st_mode):
                raise missing
            try:
                os.link(parts[-1], name, src_dir_fd=source_dir, dst_dir_fd=parent,
                        follow_symlinks=False)  # fmt: skip
            except FileExistsError:
                self._replace(parent, name, member.name)
                os.link(parts[-1], name, src_dir_fd=source_dir, dst_dir_fd=parent,
                        follow_symlinks=False)  # fmt: skip
        except FileNotFoundError:
            raise missing from None
        finally:
            os.close(source_dir)

    def _walk(self, parts: list[str]) -> int | None:
        """A new descriptor of the existing directory ``parts``, or None."""
        fd = os.dup(self._stack[0].fd)
        for name in parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = child
        return fd

    def _replace(self, parent: int, name: str, member: str) -> None:
        """A later member of the same name replaces a file or link (as tar does), never a
        directory."""
        if _is_dir(parent, name):
            raise ArchiveError(f"Archive member {shown(member)} would replace a directory")
        os.unlink(name, dir_fd=parent)

    def _attrs(self, member: tarfile.TarInfo) -> _Attrs:
        for value in (member.uid, member.gid):
            if not 0 <= value < _NO_ID:
                raise ArchiveError(
                    f"Archive member {shown(member.name)} has an owner or group out of range"
                )
        owner = (member.uid, member.gid) if self._as_root else None
        mtime_ns = int(min(max(member.mtime, 0), _MAX_MTIME) * 1_000_000_000)
        return _Attrs(member.mode & 0o7777, mtime_ns, owner)


def special_bits_script(marks: str, modes: list[int]) -> str:
    """``debugfs -w -f`` commands: give each marked inode its mode, then drop the marks."""
    lines = []
    for number, mode in enumerate(modes):
        lines.append(f"sif /{marks}/{number} mode 0{stat.S_IFREG | mode:o}")
        lines.append(f"rm /{marks}/{number}")
    lines.append(f"rmdir /{marks}")
    return "\n".join(lines) + "\n"


def _is_dir(parent: int, name: str) -> bool:
    return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)


def _copy(content: FileContent, fd: int, size: int, member: str) -> None:
    """Write each extent at its offset (a sparse file's holes stay holes), blocks of zeros
    as holes too (``mke2fs -d`` keeps them)."""
    end = 0
    for offset, length in content.extents:
        if offset < end or length < 0 or offset + length > size:
            raise ArchiveError(f"Archive member {shown(member)} has an invalid sparse map")
        os.lseek(fd, offset, os.SEEK_SET)
        _copy_run(content.source, fd, length)
        end = offset + length
    os.ftruncate(fd, size)


def _copy_run(source: IO[bytes], fd: int, length: int) -> None:
    left = length
    while left > 0:
        chunk = source.read(min(_COPY, left))
        if not chunk:
            raise ArchiveError("The archive ends in the middle of a file")
        left -= len(chunk)
        if chunk == _ZEROS[: len(chunk)]:
            os.lseek(fd, len(chunk), os.SEEK_CUR)
            continue
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
