"""Importing an image: an OCI image layout or a ``docker save`` archive becomes a
read-only ext4 root file system plus the configuration Docker users expect (entrypoint,
cmd, env, working directory).

The layers are applied in order into a staging directory with OCI whiteouts (``.wh.``
removes a path, ``.wh..wh..opq`` empties a directory), then ``mke2fs -d`` turns the tree
into ``rootfs.img``. Extraction uses :mod:`tarfile`'s ``tar`` filter, which refuses
absolute paths, ``..`` and anything that would land outside the staging directory
through a symlink. Images are imported by the operator (``volumed image import``), not
by tenants. The image's directory is named by a digest of its name: names never become
paths.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from volumed.runtime.images import GuestImage, check_image_name, image_dir

__all__ = ["ImageImportError", "import_image"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_SLACK_MB = 16


class ImageImportError(Exception):
    """The archive is not an image volumed can import; the message says why."""


def import_image(images_dir: Path, name: str, archive: Path) -> GuestImage:
    """Import ``archive`` as image ``name`` (replacing one of that name)."""
    check_image_name(name)
    try:
        outer = tarfile.open(archive)  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise ImageImportError(f"{archive} is not a tar archive: {exc}") from None
    with outer:
        config, layers, digest = _read_manifest(outer)
        images_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=images_dir, prefix=".import-") as tmp:
            tree = Path(tmp) / "tree"
            tree.mkdir()
            for layer in layers:
                _apply_layer(tree, _open_blob(outer, layer))
            for needed in ("proc", "sys", "dev", "tmp", "run"):
                (tree / needed).mkdir(exist_ok=True)
            staged = Path(tmp) / "rootfs.img"
            _make_ext4(tree, staged)
            image = _image_of(name, config, digest, staged.stat().st_size)
            target = image_dir(images_dir, name)
            incoming = Path(tmp) / "image"
            incoming.mkdir()
            staged.replace(incoming / "rootfs.img")
            (incoming / "image.json").write_text(json.dumps(_record(image)), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            incoming.replace(target)
    return image


def _read_manifest(outer: tarfile.TarFile) -> tuple[dict[str, Any], list[str], str]:
    """(image config, layer paths inside the archive, manifest digest)."""
    names = set(outer.getnames())
    if "manifest.json" in names:  # docker save
        manifest = _json(outer, "manifest.json")
        if not isinstance(manifest, list) or not manifest:
            raise ImageImportError("manifest.json lists no image")
        entry = manifest[0]
        raw = _read(outer, entry["Config"])
        return json.loads(raw), list(entry["Layers"]), "sha256:" + hashlib.sha256(raw).hexdigest()
    if "index.json" in names:  # OCI image layout
        index = _json(outer, "index.json")
        descriptor = _pick_manifest(outer, index)
        manifest = json.loads(_read(outer, _blob(descriptor["digest"])))
        config = json.loads(_read(outer, _blob(manifest["config"]["digest"])))
        layers = [_blob(layer["digest"]) for layer in manifest["layers"]]
        return config, layers, str(descriptor["digest"])
    raise ImageImportError("neither a docker save archive (manifest.json) nor an OCI layout")


def _pick_manifest(outer: tarfile.TarFile, index: dict[str, Any]) -> dict[str, Any]:
    """The linux/amd64 image manifest of an index (following nested indexes)."""
    for descriptor in index.get("manifests", []):
        platform = descriptor.get("platform") or {}
        if platform.get("architecture", "amd64") != "amd64":
            continue
        if "index" in descriptor.get("mediaType", ""):
            return _pick_manifest(outer, json.loads(_read(outer, _blob(descriptor["digest"]))))
        return dict(descriptor)
    raise ImageImportError("the OCI index has no linux/amd64 image")


def _blob(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not hexdigest.isalnum():
        raise ImageImportError(f"unsupported digest {digest[:80]!r}")
    return f"blobs/sha256/{hexdigest}"


def _read(outer: tarfile.TarFile, member: str) -> bytes:
    try:
        handle = outer.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise ImageImportError(f"the archive has no file {member!r}")
    return handle.read()


def _json(outer: tarfile.TarFile, member: str) -> Any:
    try:
        return json.loads(_read(outer, member))
    except ValueError:
        raise ImageImportError(f"{member} is not JSON") from None


def _open_blob(outer: tarfile.TarFile, member: str) -> IO[bytes]:
    data = _read(outer, member)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return io.BytesIO(data)


def _apply_layer(tree: Path, blob: IO[bytes]) -> None:
    try:
        layer = tarfile.open(fileobj=blob)  # noqa: SIM115 - closed below
    except tarfile.TarError as exc:
        raise ImageImportError(f"a layer is not a tar archive: {exc}") from None
    with layer:
        for member in _members(layer):
            path = PurePosixPath(member.name)
            if path.name == _OPAQUE:
                _empty(tree, path.parent)
            elif path.name.startswith(_WHITEOUT):
                _remove(tree, path.parent / path.name.removeprefix(_WHITEOUT))
            else:
                _remove_conflict(tree, path, member)
                try:
                    layer.extract(member, tree, filter="tar")
                except (tarfile.FilterError, OSError) as exc:
                    raise ImageImportError(f"cannot unpack {member.name!r}: {exc}") from None


def _members(layer: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in layer:
        name = PurePosixPath(member.name.lstrip("/"))
        if ".." in name.parts or str(name) in ("", "."):
            continue
        member.name = str(name)
        yield member


def _inside(tree: Path, path: PurePosixPath) -> Path | None:
    """``tree/path`` if no symlink on the way leads out of ``tree``."""
    target = tree.joinpath(path)
    try:
        target.parent.resolve().relative_to(tree.resolve())
    except ValueError:
        return None
    return target


def _remove(tree: Path, path: PurePosixPath) -> None:
    target = _inside(tree, path)
    if target is None:
        return
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


def _empty(tree: Path, path: PurePosixPath) -> None:
    target = _inside(tree, path)
    if target is not None and target.is_dir() and not target.is_symlink():
        for child in target.iterdir():
            _remove(tree, path / child.name)


def _remove_conflict(tree: Path, path: PurePosixPath, member: tarfile.TarInfo) -> None:
    """A later layer replaces a path: drop what is there unless both are directories."""
    target = _inside(tree, path)
    if target is None or not (target.exists() or target.is_symlink()):
        return
    if member.isdir() and target.is_dir() and not target.is_symlink():
        return
    _remove(tree, path)


def _make_ext4(tree: Path, image: Path) -> None:
    used = sum(p.lstat().st_size for p in tree.rglob("*"))
    size_mb = used * 5 // 4 // 1_048_576 + _SLACK_MB
    with image.open("wb") as handle:
        handle.truncate(size_mb * 1_048_576)
    done = subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "rootfs", "-d", str(tree), str(image)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )
    if done.returncode != 0:
        raise ImageImportError(f"mke2fs could not build the root file system: {done.stderr[-300:]}")


def _image_of(name: str, config: dict[str, Any], digest: str, size: int) -> GuestImage:
    inner = config.get("config") or config.get("Config") or {}
    env = {}
    for entry in inner.get("Env") or []:
        key, _, value = str(entry).partition("=")
        env[key] = value
    return GuestImage(
        name=name,
        entrypoint=[str(a) for a in inner.get("Entrypoint") or []],
        cmd=[str(a) for a in inner.get("Cmd") or []],
        env=env,
        workdir=str(inner.get("WorkingDir") or "/"),
        digest=digest,
        size_bytes=size,
        created_at_us=time.time_ns() // 1000,
    )


def _record(image: GuestImage) -> dict[str, Any]:
    return {
        "name": image.name,
        "entrypoint": image.entrypoint,
        "cmd": image.cmd,
        "env": image.env,
        "workdir": image.workdir,
        "digest": image.digest,
        "size_bytes": image.size_bytes,
        "created_at_us": image.created_at_us,
    }
