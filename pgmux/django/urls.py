"""URLs of pgmux.django: ``path("pgmux/", include("pgmux.django.urls"))``."""

from __future__ import annotations

from django.urls import path

from pgmux.django import views

app_name = "pgmux"
urlpatterns = [path("health", views.health, name="health")]
