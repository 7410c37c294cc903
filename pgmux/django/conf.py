"""Every ``PGMUX_*`` Django setting, read through one typed object: ``conf``.

Each property reads ``django.conf.settings`` when it is used, not at import, so
``override_settings`` in tests works and nothing here touches settings before Django is set up.
A value of the wrong type raises ImproperlyConfigured naming the setting. docs/django.md lists
the settings with their defaults; the defaults are declared here only.

The aliases that go through pgmux are those whose ``DATABASES`` entry has a ``"PGMUX"`` key
(the settings helper adds it); replicas are ``PGMUX_REPLICAS``, or else the marked entries with
``"REPLICA": True``.
"""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["conf", "pgmux_aliases", "pgmux_options"]

_MISSING: Final = object()


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _number(name: str, default: float) -> float:
    value = _get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(f"{name} must be a number >= 0, not {value!r}")
    return float(value)


def _optional_str(name: str) -> str | None:
    value = _get(name, None)
    if value is not None and not isinstance(value, str):
        raise ImproperlyConfigured(f"{name} must be a string, not {value!r}")
    return value


def _flag(name: str, default: bool) -> bool:
    value = _get(name, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")
    return value


def pgmux_options(alias: str) -> dict[str, Any] | None:
    """The ``"PGMUX"`` part of ``DATABASES[alias]``, or None for an alias not behind pgmux."""
    entry = settings.DATABASES.get(alias) or {}
    marker = entry.get("PGMUX")
    if marker is None:
        return None
    if marker is True:
        return {}
    if not isinstance(marker, dict):
        raise ImproperlyConfigured(f"DATABASES[{alias!r}]['PGMUX'] must be a dict or True")
    return marker


def pgmux_aliases() -> list[str]:
    """Aliases whose entry is marked as going through pgmux, in DATABASES order."""
    return [alias for alias in settings.DATABASES if pgmux_options(alias) is not None]


class PgmuxSettings:
    """Typed access to the ``PGMUX_*`` settings; use the module-level ``conf``."""

    @property
    def primary(self) -> str:
        """PGMUX_PRIMARY: the alias the router sends writes and migrations to."""
        return _optional_str("PGMUX_PRIMARY") or "default"

    @property
    def replicas(self) -> tuple[str, ...]:
        """PGMUX_REPLICAS: aliases the router may read from, balanced in turn."""
        value = _get("PGMUX_REPLICAS", _MISSING)
        if value is _MISSING:
            return tuple(
                alias for alias in pgmux_aliases() if (pgmux_options(alias) or {}).get("REPLICA")
            )
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ImproperlyConfigured("PGMUX_REPLICAS must be a list of DATABASES aliases")
        return tuple(value)

    @property
    def admin_user(self) -> str | None:
        """PGMUX_ADMIN_USER: console login (admin_users or stats_users); else the alias's USER."""
        return _optional_str("PGMUX_ADMIN_USER")

    @property
    def admin_password(self) -> str | None:
        """PGMUX_ADMIN_PASSWORD: its password; else the alias's PASSWORD."""
        return _optional_str("PGMUX_ADMIN_PASSWORD")

    @property
    def console_timeout(self) -> float:
        """PGMUX_CONSOLE_TIMEOUT: seconds to wait for the admin console (checks, health)."""
        return _number("PGMUX_CONSOLE_TIMEOUT", 2.0)

    @property
    def check_console(self) -> bool:
        """PGMUX_CHECK_CONSOLE: let ``manage.py check`` ask pgmux for its pool mode."""
        return _flag("PGMUX_CHECK_CONSOLE", True)

    @property
    def read_your_writes_seconds(self) -> float:
        """PGMUX_READ_YOUR_WRITES_SECONDS: how long after a write a client reads the primary."""
        return _number("PGMUX_READ_YOUR_WRITES_SECONDS", 5.0)

    @property
    def pin_cookie(self) -> str:
        """PGMUX_PIN_COOKIE: the cookie carrying that window from one request to the next."""
        return _optional_str("PGMUX_PIN_COOKIE") or "pgmux_pin"

    @property
    def replica_check_interval(self) -> float:
        """PGMUX_REPLICA_CHECK_INTERVAL: seconds between health probes of one replica."""
        return _number("PGMUX_REPLICA_CHECK_INTERVAL", 5.0)

    @property
    def replica_max_lag(self) -> float | None:
        """PGMUX_REPLICA_MAX_LAG: seconds of replay lag beyond which a replica is skipped."""
        if _get("PGMUX_REPLICA_MAX_LAG", None) is None:
            return None
        return _number("PGMUX_REPLICA_MAX_LAG", 0.0)

    @property
    def query_tags(self) -> bool:
        """PGMUX_QUERY_TAGS: append a sqlcommenter comment naming the route and view."""
        return _flag("PGMUX_QUERY_TAGS", True)

    @property
    def health_max_wait(self) -> float:
        """PGMUX_HEALTH_MAX_WAIT: a pool whose oldest waiting client waited longer is unhealthy."""
        return _number("PGMUX_HEALTH_MAX_WAIT", 5.0)


conf: Final = PgmuxSettings()
