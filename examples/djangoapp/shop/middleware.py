"""Errors as JSON with their text, so the demo can show *why* a request failed.

A real site would not send exception text to clients; the demo needs it to tell "too many
clients" from a timeout.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse


class JsonErrorsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        # Async stack: get_response returns a coroutine, which the server awaits.
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404 | PermissionDenied | BadRequest | SuspiciousOperation):
            return None  # Django's own 4xx handling
        text = " ".join(str(exception).split())
        return JsonResponse({"error": f"{type(exception).__name__}: {text}"}, status=500)
