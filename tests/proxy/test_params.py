"""Startup parameters and libpq ``options``: what a client's session settings are."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmux.proxy.params import (
    TRACKED_PARAMETERS,
    client_parameters,
    parse_options,
    startup_parameters,
    tracked_names,
)

SETTINGS = settings(max_examples=100, deadline=None)


# --- parse_options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("-c search_path=app", {"search_path": "app"}),
        ("-csearch_path=app", {"search_path": "app"}),
        ("--search_path=app", {"search_path": "app"}),
        ("--search-path=app", {"search_path": "app"}),  # dashes in names are underscores
        ("-c Statement_Timeout=5s", {"statement_timeout": "5s"}),  # names lowered, values kept
        ("-c a=b -c c=d --e=f", {"a": "b", "c": "d", "e": "f"}),
        ("-c\ta=b\n -c  c=d ", {"a": "b", "c": "d"}),
        ("-c a=b -c a=c", {"a": "c"}),  # the last one wins
        ("-c a=", {"a": ""}),
        ("-c a=x=y", {"a": "x=y"}),
        (r"-c search_path=a\ b", {"search_path": "a b"}),  # an escaped space
        (r"-c application_name=x\\y", {"application_name": r"x\y"}),  # an escaped backslash
        (r"-c a=\q", {"a": "q"}),  # a backslash makes any character literal
        (r"-c a=\ b\ ", {"a": " b "}),  # escaped spaces at either end of a value
        ("-c a=b\\", {"a": "b"}),  # a trailing backslash escapes nothing
    ],
)
def test_parse_options(text: str, expected: dict[str, str]) -> None:
    assert parse_options(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "search_path=app",  # not a switch
        "-B 100",  # a postmaster switch pgmux does not take
        "-c search_path",  # no value
        "--search_path",
        "-c",  # a switch without its argument
        "--",
    ],
)
def test_parse_options_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_options(text)


name = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_."), min_size=1, max_size=12)
value = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=15)


def escape(text: str) -> str:
    """As libpq users must write a value inside ``options``."""
    return "".join("\\" + ch if ch.isspace() or ch == "\\" else ch for ch in text)


@SETTINGS
@given(
    st.dictionaries(name, value, max_size=5),
    st.sampled_from(["-c ", "-c", "--"]),
    st.sampled_from([" ", "  ", "\t", " \n "]),
)
def test_parse_options_round_trip(settings_: dict[str, str], switch: str, sep: str) -> None:
    text = sep.join(f"{switch}{escape(k)}={escape(v)}" for k, v in settings_.items())
    assert parse_options(text) == settings_


@SETTINGS
@given(st.text(max_size=40))
def test_parse_options_raises_only_value_error(text: str) -> None:
    try:
        result = parse_options(text)
    except ValueError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


# --- startup_parameters ---------------------------------------------------------------------


def test_startup_parameters_drop_connection_keys() -> None:
    params = {
        "user": "alice",
        "database": "app",
        "replication": "database",
        "_pq_.compression": "on",
        "_PQ_.other": "x",
        "application_name": "psql",
        "DateStyle": "ISO",
        "search_path": "app",
    }
    assert startup_parameters(params, []) == {
        "application_name": "psql",
        "datestyle": "ISO",
        "search_path": "app",
    }


def test_startup_parameters_drop_ignored_names_case_insensitively() -> None:
    params = {"extra_float_digits": "3", "Search_Path": "app", "TimeZone": "UTC"}
    ignored = ["EXTRA_FLOAT_DIGITS", "search_path"]
    assert startup_parameters(params, ignored) == {"timezone": "UTC"}


def test_startup_parameters_merge_options_under_explicit_ones() -> None:
    params = {"options": "-c search_path=a -c statement_timeout=5s", "search_path": "b"}
    assert startup_parameters(params, []) == {"search_path": "b", "statement_timeout": "5s"}


def test_startup_parameters_options_can_be_ignored() -> None:
    params = {"options": "this is not even valid", "application_name": "x"}
    assert startup_parameters(params, ["options"]) == {"application_name": "x"}


def test_startup_parameters_bad_options_raise() -> None:
    with pytest.raises(ValueError):
        startup_parameters({"options": "-c nothing"}, [])


@SETTINGS
@given(
    st.dictionaries(st.text(min_size=1, max_size=10), value, max_size=6),
    st.lists(st.text(min_size=1, max_size=10), max_size=3),
)
def test_startup_parameters_properties(params: dict[str, str], ignore: list[str]) -> None:
    params.pop("options", None)
    result = startup_parameters(params, ignore)
    lowered_ignore = {n.lower() for n in ignore}
    for key in result:
        assert key == key.lower()
        assert key not in {"user", "database", "replication", "options"}
        assert not key.startswith("_pq_.")
        assert key not in lowered_ignore
    kept = {k.lower() for k in params} - lowered_ignore
    kept -= {"user", "database", "replication", "options"}
    assert set(result) == {k for k in kept if not k.startswith("_pq_.")}


# --- tracked names and client_parameters ---------------------------------------------------


def test_tracked_names() -> None:
    names = tracked_names(["search_path", "DATESTYLE"])
    assert names["datestyle"] == "DateStyle"  # the server's spelling wins over the extra's
    assert names["search_path"] == "search_path"
    assert set(names.values()) == {*TRACKED_PARAMETERS, "search_path"}


def test_client_parameters() -> None:
    names = tracked_names(["search_path"])
    defaults = {
        "client_encoding": "UTF8",
        "DateStyle": "ISO, MDY",
        "TimeZone": "UTC",
        "server_version": "16.1",
    }
    startup = startup_parameters(
        {"user": "u", "datestyle": "German", "options": "-c search_path=s", "work_mem": "4MB"},
        [],
    )
    assert client_parameters(defaults, startup, names) == {
        "client_encoding": "UTF8",
        "DateStyle": "German",  # the client's value under the server's name
        "TimeZone": "UTC",
        "search_path": "s",
        "work_mem": "4MB",  # not tracked: kept under the lowered startup name
    }


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(TRACKED_PARAMETERS), value),
    st.dictionaries(st.sampled_from([p.lower() for p in TRACKED_PARAMETERS]), value),
)
def test_client_parameters_startup_overrides_defaults(
    defaults: dict[str, str], startup: dict[str, str]
) -> None:
    names = tracked_names([])
    result = client_parameters(defaults, startup, names)
    assert set(result) == set(defaults) | {names[k] for k in startup}
    for canonical, got in result.items():
        assert got == startup.get(canonical.lower(), defaults.get(canonical))
