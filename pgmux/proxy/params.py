"""Session parameters a client chose, which must follow it onto every server connection.

PostgreSQL reports some settings (``GUC_REPORT``) with ParameterStatus; pgmux tracks those as
PgBouncer does, under the server's spelling of the name. Other run-time parameters a client sends
in its startup packet (``search_path``, ``statement_timeout``, ``options=-c name=value``) are
applied with SET whenever the client gets a server whose values differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

TRACKED_PARAMETERS = (
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
)

# Startup keys that are about the connection itself, not session settings.
_CONNECTION_KEYS = frozenset(("user", "database", "replication", "options"))


def tracked_names(extra: Iterable[str]) -> dict[str, str]:
    """Lower-case name -> canonical (server-reported) name of every tracked parameter."""
    names = {name.lower(): name for name in TRACKED_PARAMETERS}
    for name in extra:
        names.setdefault(name.lower(), name)
    return names


def parse_options(text: str) -> dict[str, str]:
    """``-c name=value`` / ``--name=value`` settings of libpq's ``options`` parameter.

    As in PostgreSQL, arguments are separated by spaces and a backslash makes the next
    character literal (so ``\\ `` is a space inside a value).
    """
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    settings: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            word = words[i + 1]
            i += 1
        elif word.startswith("-c") or word.startswith("--"):
            word = word[2:]
        else:
            raise ValueError(f"invalid command-line argument in options: {word!r}")
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"-c {name} requires a value")
        settings[name.replace("-", "_").lower()] = value
        i += 1
    return settings


def startup_parameters(params: Mapping[str, str], ignore: Iterable[str]) -> dict[str, str]:
    """The session settings a startup packet asks for (ignored ones dropped), names lowered."""
    ignored = {name.lower() for name in ignore}
    settings: dict[str, str] = {}
    if "options" in params and "options" not in ignored:
        settings.update(parse_options(params["options"]))
    for name, value in params.items():
        lowered = name.lower()
        if lowered in _CONNECTION_KEYS or lowered.startswith("_pq_.") or lowered in ignored:
            continue
        settings[lowered] = value
    return settings


def client_parameters(
    server_defaults: Mapping[str, str], startup: Mapping[str, str], names: Mapping[str, str]
) -> dict[str, str]:
    """A new client's wanted values: the server's defaults, overridden by its startup packet."""
    params = {
        canonical: server_defaults[canonical]
        for canonical in names.values()
        if canonical in server_defaults
    }
    for lowered, value in startup.items():
        params[names.get(lowered, lowered)] = value
    return params
