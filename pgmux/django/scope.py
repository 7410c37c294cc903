"""Request-scoped state shared by the middleware, the router and the query tagger.

A ``RequestScope`` lives in a ``ContextVar``, so it follows the request into asgiref's
``sync_to_async`` threads and async tasks, where thread locals would not. The scope is a
mutable object: the router marks a write on it from whichever thread runs the ORM call, and the
middleware, holding the same object, sees the mark when the response goes out, even though
context *changes* made in a worker thread are not guaranteed to flow back.

Outside a request (a management command, a worker task) there is no scope until the first write
creates one for the current thread or task, so a script that writes and then reads also reads
its own writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestScope", "current", "enter", "leave", "mark_write", "pinned", "use_primary"]


@dataclass
class RequestScope:
    """What one request has done so far and where it came from."""

    request: Any = None  # the HttpRequest; its resolver_match names the route and view
    pinned: bool = False  # reads go to the primary for the whole request (recent write)
    wrote: bool = False  # this request routed a write to the primary
    comment: str | None = None  # the query tag, built once the URL is resolved


_scope: ContextVar[RequestScope | None] = ContextVar("pgmux_request_scope", default=None)
_force_primary: ContextVar[int] = ContextVar("pgmux_force_primary", default=0)


def current() -> RequestScope | None:
    return _scope.get()


def enter(scope: RequestScope) -> Token[RequestScope | None]:
    return _scope.set(scope)


def leave(token: Token[RequestScope | None]) -> None:
    _scope.reset(token)


def mark_write() -> None:
    """Record that a write was routed to the primary; later reads in this scope follow it."""
    scope = _scope.get()
    if scope is None:
        scope = RequestScope()
        _scope.set(scope)
    scope.wrote = True


def pinned() -> bool:
    """True when reads must go to the primary: after a write, in the window, or when forced."""
    if _force_primary.get():
        return True
    scope = _scope.get()
    return scope is not None and (scope.wrote or scope.pinned)


@contextmanager
def use_primary() -> Iterator[None]:
    """Send every read in the block to the primary (nested blocks are fine)."""
    token = _force_primary.set(_force_primary.get() + 1)
    try:
        yield
    finally:
        _force_primary.reset(token)
