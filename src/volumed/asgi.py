"""The ASGI types, named once: the app (:mod:`volumed.api.app`), its observer
(:mod:`volumed.api.observe`) and the connection guard (:mod:`volumed.edge.guard`) speak
them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
