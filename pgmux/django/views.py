"""The health view for load balancers: 200 with a JSON report when pgmux is fine, else 503.

Route it with ``path("pgmux/", include("pgmux.django.urls"))`` (``/pgmux/health``). It asks
pgmux's admin console, not PostgreSQL, so a check every few seconds costs no server connection.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from pgmux.django.health import collect

__all__ = ["health"]


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    healthy, report = collect()
    return JsonResponse(report, status=200 if healthy else 503)
