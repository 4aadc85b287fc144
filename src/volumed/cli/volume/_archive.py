"""Tar streams on the client side: a directory or a file as upload chunks, and a
download unpacked into a directory, keeping modes, owners (as root), symlinks and
hard links, refusing paths that leave the directory."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from volumed.cli.client import Client

CHUNK = 1 << 20


def tree_size(root: Path) -> int:
    """Bytes of file content under ``root`` (for the progress bar's total)."""
    total = 0
    for current, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(current, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(current, name)):
                total += st.st_size
    return total


def tar_directory(root: Path) -> Iterator[bytes]:
    """``root`` as a GNU tar stream (``./…`` names), produced by a thread into a pipe."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with (
                os.fdopen(write_fd, "wb", buffering=CHUNK) as out,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as archive,
            ):
                archive.add(str(root), arcname=".", recursive=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            failure.append(exc)

    thread = threading.Thread(target=produce, name="tar-directory", daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as inp:
        while chunk := inp.read(CHUNK):
            yield chunk
    thread.join()
    if failure:
        raise failure[0]


def read_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


class IterReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def untar_into(chunks: Iterator[bytes], dest: Path) -> int:
    """Unpack a tar stream into ``dest``; returns the number of entries."""
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    directories: list[tuple[tarfile.TarInfo, str]] = []
    count = 0
    reader = io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)
    with tarfile.open(fileobj=reader, mode="r|") as archive:
        for member in archive:
            count += 1
            member = _checked(member, root)
            target = os.path.join(root, member.name)
            if member.isdir():
                directories.append((member, target))
                if member.name != ".":
                    archive.extract(
                        member, root, set_attrs=False, numeric_owner=True, filter=_unchanged
                    )
                continue
            archive.extract(member, root, numeric_owner=True, filter=_unchanged)
        directories.sort(key=lambda d: d[1], reverse=True)
        for member, target in directories:
            archive.chown(member, target, True)
            archive.utime(member, target)
            archive.chmod(member, target)
    return count


def _unchanged(member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo:
    return member


def _checked(member: tarfile.TarInfo, root: str) -> tarfile.TarInfo:
    """tarfile's own ``tar`` filter for paths (no absolute path, nothing outside, no
    write through a symlink), but with the mode kept whole; hard links stay inside."""
    safe = tarfile.tar_filter(member, root)
    safe = safe.replace(mode=member.mode, deep=False)
    name = os.path.normpath(safe.name)
    if name != safe.name:
        safe = safe.replace(name=name, deep=False)
    if safe.islnk():
        link = os.path.realpath(os.path.join(root, safe.linkname))
        if os.path.commonpath([link, root]) != root:
            raise tarfile.OutsideDestinationError(safe, link)
    return safe


def holds_files(client: Client, uuid: str) -> bool:
    """Whether the volume holds anything besides an empty file system's ``lost+found``:
    reads its export only up to the first such entry, then hangs up."""
    response, stream = client.download(f"/volumed/v1/volumes/{uuid}/export")
    try:
        if not response.headers.get("content-type", "").startswith("application/x-tar"):
            return False  # the export was refused (e.g. attached): the import will say why
        reader = io.BufferedReader(IterReader(response.iter_raw(1 << 16)))
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for member in archive:
                name = member.name.strip("/").removeprefix("./")
                if name not in ("", ".", "lost+found") and not name.startswith("lost+found/"):
                    return True
        return False
    finally:
        stream.__exit__(None, None, None)
