"""Validation rules for values a user chooses: names, sizes, tags, mount paths, UUIDs.

Each rule raises the domain error with the per-item code the API reports.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid as uuid_lib
from typing import Final

from volumed.domain import errors
from volumed.domain.model import Ref
from volumed.domain.states import AccessMode, QuotaPolicy

NAME_MAX: Final = 63
"""Names are DNS-label-like so they are safe in URLs, hostnames and shells."""
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_RULE: Final = (
    "a name starts with a letter or digit, continues with letters, digits, '.', '_' or '-', "
    f"is at most {NAME_MAX} characters long and is not a UUID"
)

TAGS_MAX: Final = 16
TAG_MAX_LEN: Final = 256
_TAG_RE: Final = re.compile(r"[A-Za-z0-9+_.:=-]+")

_RANDOM_ALPHABET: Final = string.ascii_lowercase + string.digits
_NAMES: Final = len(_RANDOM_ALPHABET) ** 5
_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def random_name(prefix: str = "vol") -> str:
    """``vol-`` plus five random lowercase alphanumerics, as the hosted service names them."""
    # One draw of 26 random bits for the five characters (36**5 < 2**26), redrawn when
    # it falls past 36**5 so each name stays equally likely; not five secrets.choice
    # calls, each its own os.urandom: 9 -> 1.6 us a name (issue 15).
    while (n := secrets.randbits(26)) >= _NAMES:
        pass
    chars = []
    for _ in range(5):
        n, digit = divmod(n, 36)
        chars.append(_RANDOM_ALPHABET[digit])
    return prefix + "-" + "".join(chars)


def looks_like_uuid(value: str) -> bool:
    try:
        uuid_lib.UUID(value)
    except ValueError:
        return False
    return True


def canonical_uuid(value: str) -> str:
    """The lowercase hyphenated form of a UUID, or Invalid (``Invalid uuid '<x>'``)."""
    if _UUID_RE.fullmatch(value):
        return value
    try:
        return str(uuid_lib.UUID(value))
    except ValueError:
        raise errors.Invalid(f"Invalid uuid '{value}'") from None


def new_uuid() -> str:
    return str(uuid_lib.uuid4())


def check_name(name: str, kind: str = "volume") -> str:
    if len(name) > NAME_MAX:
        raise errors.TooLong(f"The {kind} name is {len(name)} characters long; {NAME_RULE}")
    if not _NAME_RE.fullmatch(name):
        raise errors.Invalid(f"Invalid {kind} name '{_printable(name)}': {NAME_RULE}")
    if looks_like_uuid(name):
        raise errors.Invalid(f"Invalid {kind} name '{name}': {NAME_RULE}")
    return name


def check_ref(uuid: str | None, name: str | None, kind: str = "volume") -> Ref:
    """Exactly one of ``uuid`` and ``name``; the uuid must parse."""
    if uuid is not None and name is not None:
        raise errors.NotBoth(f"Give either the uuid or the name of the {kind}, not both")
    if uuid is None and name is None:
        raise errors.MissingId(f"The uuid or the name of the {kind} is missing")
    if uuid is not None:
        return Ref(uuid=canonical_uuid(uuid))
    assert name is not None
    return Ref(name=name)


def check_size(size_mb: int, max_mb: int, min_mb: int = 1) -> int:
    if size_mb < min_mb:
        raise errors.Invalid(f"size_mb must be at least {min_mb}, got {size_mb}")
    if size_mb > max_mb:
        raise errors.QuotaExceeded(f"size_mb {size_mb} exceeds the maximum volume size of {max_mb}")
    return size_mb


def check_tags(tags: list[str]) -> list[str]:
    """Validate and deduplicate, keeping first-seen order."""
    unique = list(dict.fromkeys(tags))
    if len(unique) > TAGS_MAX:
        raise errors.TooMany(f"A volume carries at most {TAGS_MAX} tags, got {len(unique)}")
    for tag in unique:
        if len(tag) > TAG_MAX_LEN:
            raise errors.TooLong(f"A tag is at most {TAG_MAX_LEN} characters long")
        if not _TAG_RE.fullmatch(tag):
            raise errors.Invalid(
                f"Invalid tag '{_printable(tag)}': tags use letters, digits and + - _ . : ="
            )
    return unique


def check_mount_path(at: str) -> str:
    """Absolute, no ``:``, no ``.`` or ``..`` component (api-reference §4.5)."""
    if not at.startswith("/"):
        raise errors.Invalid(f"Mount path '{_printable(at)}' must be absolute")
    if ":" in at:
        raise errors.Invalid(f"Mount path '{_printable(at)}' must not contain ':'")
    if any(part in (".", "..") for part in at.split("/")):
        raise errors.Invalid(f"Mount path '{_printable(at)}' must not contain . or .. components")
    if "\x00" in at or len(at) > 4096:
        raise errors.Invalid("Mount path is not a valid path")
    return at


def check_quota_policy(value: str) -> QuotaPolicy:
    try:
        return QuotaPolicy(value)
    except ValueError:
        raise errors.Invalid(
            f"Invalid quota_policy '{_printable(value)}': use static or dynamic"
        ) from None


def check_access_mode(value: str) -> AccessMode:
    try:
        mode = AccessMode(value)
    except ValueError:
        raise errors.Invalid(f"Invalid access_mode '{_printable(value)}': use rwo or rox") from None
    if mode is AccessMode.RWX:
        raise errors.NotSupported(
            "access_mode rwx needs a shared file system such as virtiofs; ext4 volumes can be "
            "written by one instance at a time (rwo) or read by many (rox)"
        )
    return mode


def check_filesystem(value: str) -> str:
    if value != "ext4":
        raise errors.NotSupported(
            f"Filesystem '{_printable(value)}' is not supported; volumes are ext4"
        )
    return value


def _printable(value: str) -> str:
    """Echo user input without control characters and at a readable length."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value)
    return cleaned if len(cleaned) <= 80 else cleaned[:77] + "..."
