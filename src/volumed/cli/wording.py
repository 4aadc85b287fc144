"""The server's messages in the words of the command line.

The API names its fields (``size_mb``, ``delete_lock``) and its methods ("remove it with
PATCH first"); someone who typed ``volumed volume create --size`` should read about
``--size``. Only whole words are replaced, so a volume called ``size_mb`` keeps its name
wherever the message quotes it ('size_mb')."""

from __future__ import annotations

import re

__all__ = ["in_cli_words"]

_PHRASES = [
    (
        re.compile(r"Volume ('?)([^';]+)\1 has a delete lock; remove it with PATCH first"),
        r"Volume \1\2\1 has a delete lock; remove it first with "
        r"`volumed volume update \2 --no-delete-lock`",
    ),
    (re.compile(r"remove it with PATCH first"), "remove it first"),
]
_FIELDS = {
    "size_mb": "--size",
    "delete_lock": "--delete-lock",
    "quota_policy": "--policy",
    "access_mode": "--access-mode",
    "attach_to": "--to",
    "readonly": "--read-only",
}
_FIELD = re.compile(r"(?<![\w'-])(" + "|".join(_FIELDS) + r")(?![\w'])")


def in_cli_words(message: str) -> str:
    """``message`` with API field names and API-only advice replaced by flags."""
    for pattern, replacement in _PHRASES:
        message = pattern.sub(replacement, message)
    return _FIELD.sub(lambda m: _FIELDS[m.group(1)], message)
