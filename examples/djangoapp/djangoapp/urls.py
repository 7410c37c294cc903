"""URLs: the shop's JSON API and pgmux.django's health view."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("shop.urls")),
    path("pgmux/", include("pgmux.django.urls")),
]
