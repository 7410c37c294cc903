"""``PgmuxMiddleware``: opens the request scope the router and the query tagger rely on.

Add ``"pgmux.django.middleware.PgmuxMiddleware"`` near the top of ``MIDDLEWARE``. Per request it

* sets a ``RequestScope`` (a ContextVar, so it works for sync and async views alike);
* pins the request's reads to the primary when the client wrote within
  ``PGMUX_READ_YOUR_WRITES_SECONDS`` (a cookie holding the end of the window);
* after a request that wrote, sets that cookie so the same client's next requests (the GET
  after a POST-redirect) read their own write;
* gives the query tagger the request, from which it names the route and view.

It works both in WSGI and ASGI stacks without a thread hop: Django calls whichever of
``__call__``'s two forms matches the stack.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from pgmux.django import scope
from pgmux.django.conf import conf

__all__ = ["PgmuxMiddleware"]

# A client can only make itself read from the primary; still, do not let a forged cookie pin it
# for longer than one window.
_CLOCK_SKEW = 1.0


class PgmuxMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        state = self._open(request)
        token = scope.enter(state)
        try:
            response: HttpResponseBase = self.get_response(request)
        finally:
            scope.leave(token)
        self._close(state, response)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        state = self._open(request)
        token = scope.enter(state)
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            response = await get_response(request)
        finally:
            scope.leave(token)
        self._close(state, response)
        return response

    def _open(self, request: HttpRequest) -> scope.RequestScope:
        state = scope.RequestScope(request=request)
        window = conf.read_your_writes_seconds
        raw = request.COOKIES.get(conf.pin_cookie)
        if raw and window > 0:
            try:
                until = float(raw)
            except ValueError:
                until = 0.0
            now = time.time()
            state.pinned = now < until <= now + window + _CLOCK_SKEW
        return state

    def _close(self, state: scope.RequestScope, response: HttpResponseBase) -> None:
        window = conf.read_your_writes_seconds
        if state.wrote and window > 0:
            response.set_cookie(
                conf.pin_cookie,
                f"{time.time() + window:.3f}",
                max_age=max(1, int(window + 0.999)),
                httponly=True,
                samesite="Lax",
            )
