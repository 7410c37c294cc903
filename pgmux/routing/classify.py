"""Query classification: what one SQL text does to session state and to databases.

``classify(sql)`` parses a simple-protocol Query body or a Parse message's query (several
``;``-separated statements allowed) with pglast, PostgreSQL's own parser, and reports:

- ``pins``: reasons the server connection keeps state past the end of the transaction (``set``,
  ``set_role``, ``listen``, ``advisory_lock``, ``temp_table``, ``cursor_with_hold``, ``prepare``,
  ``load``), with the parameter names of ``set`` in ``set_names``;
- ``releases``: statements that drop such state; ``RELEASED_BY`` says which pins each drops;
- the databases a text drops or copies as a template, transaction control, and a best-effort
  ``read_only`` for replica routing.

The contract for a caller keeping a set of pin reasons per server connection:
``reasons = (reasons - released) | set(pins)``, where ``released`` is the union of
``RELEASED_BY[r]`` for ``r`` in ``releases``. Pins are reported whatever the order of the
statements and whether or not they run (over-pinning is safe); releases describe the text as if
every statement succeeded, so apply them only when it ran without error and was not rolled back.
Unparseable text has no effects (PostgreSQL rejects it too) and ``parse_error=True``.

``StatementCache.lookup`` is the hot-path entry: a bounded LRU keyed by the raw text, and in
front of pglast a pre-filter (``prefilter``) that answers, without parsing, for texts made of
plain SELECT/INSERT/UPDATE/DELETE/transaction-control statements that mention nothing able to
change the session. Whenever the pre-filter answers, it answers what ``classify`` would have
for any text PostgreSQL accepts; results are shared immutable objects. ``fingerprint`` groups
texts that differ only in constants, for per-query statistics.

Everything here is pure (no I/O) and never raises on any ``str``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pglast import parser as _pg

ANY_PARAMETER: Final = "*"  # in set_names: a parameter whose name is not a literal

RELEASED_BY: Final[Mapping[str, frozenset[str]]] = {
    "unlisten_all": frozenset({"listen"}),
    "advisory_unlock_all": frozenset({"advisory_lock"}),
    # DISCARD ALL = SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; CLOSE ALL;
    # UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS, TEMP, SEQUENCES. A LOADed
    # library stays loaded.
    "discard_all": frozenset(
        {"set", "set_role", "listen", "advisory_lock", "temp_table", "cursor_with_hold", "prepare"}
    ),
    "deallocate_all": frozenset({"prepare"}),
    "close_all": frozenset({"cursor_with_hold"}),
    "discard_temp": frozenset({"temp_table"}),
    "reset_all": frozenset({"set"}),  # role and session_authorization are GUC_NO_RESET_ALL
}


@dataclass(frozen=True, slots=True)
class Classification:
    """What one SQL text does; see the module docstring for how to apply it."""

    pins: tuple[str, ...] = ()
    set_names: tuple[str, ...] = ()
    releases: tuple[str, ...] = ()
    deallocate: tuple[str, ...] = ()
    drop_databases: tuple[str, ...] = ()
    create_from_templates: tuple[str, ...] = ()
    force_drop: bool = False
    is_transaction_control: bool = False
    starts_transaction: bool = False
    read_only: bool | None = None
    parse_error: bool = False
    statement_types: tuple[str, ...] = ()


_INTERNED: dict[Classification, Classification] = {}


def _intern(result: Classification) -> Classification:
    """The shared instance equal to ``result``, so that caches hold few distinct objects."""
    if len(result.statement_types) > 8:  # bounded: keys stay small and few
        return result
    if len(_INTERNED) < 4096:
        return _INTERNED.setdefault(result, result)
    return _INTERNED.get(result, result)


NO_EFFECT: Final = _intern(Classification())
PARSE_ERROR: Final = _intern(Classification(parse_error=True))

# --- functions ------------------------------------------------------------------------------
# Matched on the last part of the name, so a schema-qualified or same-named user function
# counts too: a false pin costs a little pooling, a missed one hands session state to others.
_LOCK_FUNCTIONS: Final = frozenset(
    {"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
     "pg_try_advisory_lock_shared"}
)  # fmt: skip
_UNLOCK_ALL: Final = "pg_advisory_unlock_all"
# Built-ins that write, lock, take an xid, act on the server or seed the session: never
# "read_only".
_WRITING_FUNCTIONS: Final = frozenset(
    {"nextval", "setval", "set_config", "setseed", "lowrite", "pg_notify", "txid_current",
     "pg_current_xact_id", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
     "pg_rotate_logfile", "pg_switch_wal", "pg_promote", "pg_replication_slot_advance",
     "pg_backup_start", "pg_backup_stop", "pg_import_system_collations", "dblink_exec"}
)  # fmt: skip
_WRITING_PREFIXES: Final = (
    "pg_advisory_", "pg_try_advisory_", "lo_", "pg_stat_reset", "pg_replication_origin_",
    "pg_create_", "pg_drop_", "pg_copy_", "pg_logical_",
)  # fmt: skip
_WRITE_NODES: Final = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
# Bodies that define, not run, a query: calls inside them do not happen now.
_OPAQUE: Final = frozenset({"CreateFunctionStmt", "ViewStmt", "RuleStmt"})
# Only a tree that holds one of these (as JSON keys) needs walking; `in` beats a regex here.
_WALK_WORDS: Final = ("FuncCall", "lockingClause", "intoClause", *_WRITE_NODES)
_CURSOR_OPT_HOLD: Final = 0x20  # parsenodes.h
_TRUE_WORDS: Final = frozenset({"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"})


class _Effects:
    """Accumulates what the statements of one text do, then freezes into a Classification."""

    __slots__ = (
        "all_select", "deallocate", "drops", "force", "names", "pins", "releases", "starts",
        "templates", "transaction", "types", "writes",
    )  # fmt: skip

    def __init__(self) -> None:
        self.pins: dict[str, None] = {}  # dicts as insertion-ordered sets
        self.names: dict[str, None] = {}
        self.releases: dict[str, None] = {}
        self.deallocate: dict[str, None] = {}
        self.drops: dict[str, None] = {}
        self.templates: dict[str, None] = {}
        self.types: list[str] = []
        self.force = self.transaction = self.starts = self.writes = False
        self.all_select = True

    def set_parameter(self, name: str) -> None:
        if name in ("role", "session_authorization"):
            self.pins["set_role"] = None
        else:
            self.pins["set"] = None
            self.names[name] = None

    def freeze(self) -> Classification:
        return _intern(
            Classification(
                pins=tuple(self.pins),
                set_names=tuple(self.names),
                releases=tuple(self.releases),
                deallocate=tuple(self.deallocate),
                drop_databases=tuple(self.drops),
                create_from_templates=tuple(self.templates),
                force_drop=self.force,
                is_transaction_control=self.transaction,
                starts_transaction=self.starts,
                read_only=(self.all_select and not self.writes) if self.types else None,
                statement_types=tuple(self.types),
            )
        )


# --- reading pglast's JSON tree -------------------------------------------------------------
# Nodes in generic fields are wrapped as {"TypeName": {fields}}; typed fields hold the fields
# directly; fields at their default value (false, 0, empty) are left out.


def _sval(node: Any) -> str | None:
    """The text of a ``String`` node, else None."""
    inner = node.get("String") if isinstance(node, dict) else None
    return str(inner.get("sval", "")) if isinstance(inner, dict) else None


def _last_name(names: Any) -> str:
    """The unqualified name in a list of ``String`` nodes (``pg_catalog.f`` -> ``f``)."""
    return (_sval(names[-1]) or "") if isinstance(names, list) and names else ""


_NOT_CONSTANT: Final = object()


def _constant(node: Any) -> object:
    """The value of a literal (through a cast to boolean or text), else ``_NOT_CONSTANT``."""
    if not isinstance(node, dict):
        return _NOT_CONSTANT
    cast = node.get("TypeCast")
    if isinstance(cast, dict):
        if _last_name(cast.get("typeName", {}).get("names")) in ("bool", "boolean", "text"):
            return _constant(cast.get("arg"))
        return _NOT_CONSTANT
    const = node.get("A_Const")
    if not isinstance(const, dict):
        return _NOT_CONSTANT
    if const.get("isnull"):
        return None
    if "boolval" in const:
        return bool(const["boolval"].get("boolval", False))
    if "sval" in const:
        return const["sval"].get("sval", "")
    return _NOT_CONSTANT


def _is_temp(rel: Any) -> bool:
    """Whether a RangeVar names a temporary relation (TEMP keyword or the pg_temp schema)."""
    if not isinstance(rel, dict):
        return False
    return rel.get("relpersistence") == "t" or str(rel.get("schemaname", "")).startswith("pg_temp")


# --- top-level statements -------------------------------------------------------------------


def _on_variable_set(f: dict[str, Any], fx: _Effects) -> None:
    if f.get("is_local"):  # SET LOCAL ends with the transaction
        return
    kind, name = f.get("kind"), str(f.get("name", ""))
    if kind == "VAR_RESET_ALL":
        fx.pins["set"] = None
        fx.releases["reset_all"] = None
    elif kind == "VAR_SET_MULTI":
        if name == "SESSION CHARACTERISTICS":  # sets default_transaction_*
            for arg in f.get("args", []):
                fx.set_parameter("default_" + str(arg.get("DefElem", {}).get("defname", "")))
        elif not name.startswith("TRANSACTION"):  # SET TRANSACTION ... is for one transaction
            fx.set_parameter(ANY_PARAMETER)
    else:
        fx.set_parameter(name.lower())


def _on_transaction(f: dict[str, Any], fx: _Effects) -> None:
    fx.transaction = True
    # COMMIT/ROLLBACK AND CHAIN open the next transaction at once.
    if f.get("kind") in ("TRANS_STMT_BEGIN", "TRANS_STMT_START") or f.get("chain"):
        fx.starts = True


def _on_deallocate(f: dict[str, Any], fx: _Effects) -> None:
    if f.get("isall"):
        fx.releases["deallocate_all"] = None
    else:
        fx.deallocate[str(f.get("name", ""))] = None


def _on_discard(f: dict[str, Any], fx: _Effects) -> None:
    release = _DISCARDS.get(f.get("target", "DISCARD_ALL"))  # PLANS, SEQUENCES: nothing
    if release:
        fx.releases[release] = None


_DISCARDS: Final = {"DISCARD_ALL": "discard_all", "DISCARD_TEMP": "discard_temp"}


def _on_declare(f: dict[str, Any], fx: _Effects) -> None:
    if int(f.get("options", 0)) & _CURSOR_OPT_HOLD:
        fx.pins["cursor_with_hold"] = None


def _pin_temp(rel: Any, on_commit: Any, fx: _Effects) -> None:
    if _is_temp(rel) and on_commit != "ONCOMMIT_DROP":  # ON COMMIT DROP ends with the xact
        fx.pins["temp_table"] = None


def _pin_temp_into(into: dict[str, Any], fx: _Effects) -> None:
    """CREATE TABLE AS and SELECT INTO: an IntoClause."""
    _pin_temp(into.get("rel"), into.get("onCommit"), fx)


def _on_dropdb(f: dict[str, Any], fx: _Effects) -> None:
    fx.drops[str(f.get("dbname", ""))] = None
    if any(o.get("DefElem", {}).get("defname") == "force" for o in f.get("options", [])):
        fx.force = True


def _on_createdb(f: dict[str, Any], fx: _Effects) -> None:
    for option in f.get("options", []):
        elem = option.get("DefElem", {})
        template = _sval(elem.get("arg"))
        if elem.get("defname") == "template" and template:  # not TEMPLATE DEFAULT
            fx.templates[template] = None


_HANDLERS: Final[Mapping[str, Callable[[dict[str, Any], _Effects], None]]] = {
    "VariableSetStmt": _on_variable_set,
    "TransactionStmt": _on_transaction,
    "DeallocateStmt": _on_deallocate,
    "DiscardStmt": _on_discard,
    "DeclareCursorStmt": _on_declare,
    "CreateStmt": lambda f, fx: _pin_temp(f.get("relation"), f.get("oncommit"), fx),
    "CreateTableAsStmt": lambda f, fx: _pin_temp_into(f.get("into", {}), fx),
    "DropdbStmt": _on_dropdb,
    "CreatedbStmt": _on_createdb,
}
# Simpler statements, as data. These pin by being there:
_PINNING: Final = {"ListenStmt": "listen", "PrepareStmt": "prepare", "LoadStmt": "load"}
# these release all of a kind when the name field is absent (UNLISTEN *, CLOSE ALL):
_RELEASING: Final = {"UnlistenStmt": ("conditionname", "unlisten_all"),
                     "ClosePortalStmt": ("portalname", "close_all")}  # fmt: skip
# these create a temporary object when this RangeVar is (TEMP, or schema pg_temp):
_TEMP_RELATION: Final = {"ViewStmt": "view", "CreateSeqStmt": "sequence",
                         "CompositeTypeStmt": "typevar"}  # fmt: skip
# and these when this qualified name is in schema pg_temp.
_TEMP_NAME: Final = {"CreateFunctionStmt": "funcname", "DefineStmt": "defnames",
                     "CreateDomainStmt": "domainname", "CreateEnumStmt": "typeName",
                     "CreateRangeStmt": "typeName"}  # fmt: skip


def _on_statement(type_name: str, f: dict[str, Any], fx: _Effects) -> None:
    """What one top-level statement does by its own kind and fields."""
    if type_name in _PINNING:
        fx.pins[_PINNING[type_name]] = None
    elif type_name in _RELEASING:
        name_field, release = _RELEASING[type_name]
        if not f.get(name_field):
            fx.releases[release] = None
    elif type_name in _TEMP_RELATION:
        _pin_temp(f.get(_TEMP_RELATION[type_name]), None, fx)
    elif type_name in _TEMP_NAME:
        names = f.get(_TEMP_NAME[type_name])
        if isinstance(names, list) and len(names) > 1:
            _pin_temp({"schemaname": _sval(names[0]) or ""}, None, fx)
    elif type_name in _HANDLERS:
        _HANDLERS[type_name](f, fx)


# --- anywhere in a statement ----------------------------------------------------------------


def _nodes(root: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in a JSON tree with the key it sits under, without recursion (trees of
    long operator chains are thousands of levels deep)."""
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict):
                    if key not in _OPAQUE:
                        yield key, value
                        stack.append(value)
                elif isinstance(value, list):
                    stack.append(value)


def _on_set_config(args: list[Any], fx: _Effects) -> None:
    """``set_config(name, value, is_local)`` pins unless ``is_local`` is a literal true."""
    positional = [a for a in args if "NamedArgExpr" not in a]
    named = {
        a["NamedArgExpr"].get("name"): a["NamedArgExpr"].get("arg")
        for a in args
        if "NamedArgExpr" in a
    }
    local = positional[2] if len(positional) > 2 else named.get("is_local")
    is_local = _constant(local)
    if is_local is True or (isinstance(is_local, str) and is_local.strip().lower() in _TRUE_WORDS):
        return
    name = _constant(positional[0] if positional else named.get("setting_name"))
    fx.set_parameter(name.lower() if isinstance(name, str) else ANY_PARAMETER)


def _on_call(f: dict[str, Any], fx: _Effects) -> None:
    name = _last_name(f.get("funcname"))
    if name in _LOCK_FUNCTIONS:
        fx.pins["advisory_lock"] = None
    elif name == _UNLOCK_ALL:
        fx.releases["advisory_unlock_all"] = None
    elif name == "set_config":
        _on_set_config(f.get("args", []), fx)
    if name in _WRITING_FUNCTIONS or name.startswith(_WRITING_PREFIXES):
        fx.writes = True


def _scan_tree(stmt: Any, fx: _Effects) -> None:
    """Function calls, SELECT INTO, row locks and data-modifying statements at any depth."""
    for key, node in _nodes(stmt):
        if key == "FuncCall":
            _on_call(node, fx)
        elif key in _WRITE_NODES or "lockingClause" in node:
            fx.writes = True
        if "intoClause" in node:  # SELECT ... INTO creates a table
            fx.writes = True
            _pin_temp_into(node["intoClause"], fx)


# --- parsing --------------------------------------------------------------------------------

_JSON_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*+"|[{}\[\]:,]|[^{}\[\]:,"\s]++')


def _loads_deep(text: str) -> Any:
    """``json.loads`` without recursion, for trees deeper than the interpreter's stack."""
    open_: list[Any] = []
    root: Any = None
    key: str | None = None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in ("}", "]"):
            open_.pop()
            continue
        if token in (":", ","):
            continue
        value: Any = {} if token == "{" else [] if token == "[" else json.loads(token)
        if not open_:
            root = value
        elif isinstance(open_[-1], list):
            open_[-1].append(value)
        elif key is None:
            key = value
            continue
        else:
            open_[-1][key] = value
            key = None
        if token in ("{", "["):
            open_.append(value)
    return root


def _parse(sql: str) -> tuple[list[Any], str] | None:
    """pglast's statements as JSON objects, and the JSON text; None if PostgreSQL would reject
    the text (or it cannot be encoded for the parser)."""
    try:
        text = _pg.parse_sql_json(sql)
    except (_pg.ParseError, ValueError):  # UnicodeEncodeError (lone surrogates) is a ValueError
        return None
    try:
        tree = json.loads(text)
    except RecursionError:
        tree = _loads_deep(text)
    return [raw.get("stmt", {}) for raw in tree.get("stmts", [])], text


def _truncate(sql: str) -> str:
    """The text PostgreSQL reads: it ends at the first NUL (the message terminator)."""
    end = sql.find("\x00")
    return sql if end < 0 else sql[:end]


def classify(sql: str) -> Classification:
    """Classify ``sql`` by parsing it with pglast (no pre-filter, no cache)."""
    parsed = _parse(_truncate(sql))
    if parsed is None:
        return PARSE_ERROR
    stmts, text = parsed
    walk = any(word in text for word in _WALK_WORDS)
    fx = _Effects()
    for stmt in stmts:
        for type_name, fields in stmt.items():  # exactly one: {"SelectStmt": {...}}
            fx.types.append(type_name)
            fx.all_select = fx.all_select and type_name == "SelectStmt"
            _on_statement(type_name, fields, fx)
        if walk:
            _scan_tree(stmt, fx)
    return fx.freeze()


def deallocate_spans(sql: bytes) -> tuple[tuple[int, int], ...]:
    """Where each ``DEALLOCATE name`` statement of ``sql`` is, as byte ranges, in order.

    For renaming statements inside a text of several; empty when the text is not UTF-8 (the
    parser's offsets would not be byte offsets of ``sql``) or does not parse.
    """
    try:
        text = _truncate(sql.decode("utf-8"))
        tree = json.loads(_pg.parse_sql_json(text))
    except (_pg.ParseError, ValueError, RecursionError):
        return ()
    spans = []
    for raw in tree.get("stmts", []):
        fields = raw.get("stmt", {}).get("DeallocateStmt")
        if fields is None or fields.get("isall") or not fields.get("name"):
            continue
        start = raw.get("stmt_location", 0)  # the parser's JSON leaves out zeros
        length = raw.get("stmt_len", 0) or len(sql) - start  # 0: up to the end
        spans.append((start, start + length))
    return tuple(spans)


# --- the pre-filter -------------------------------------------------------------------------
# First word of a statement -> (statement type, may be read-only, transaction control, starts
# a transaction). Statements starting any other way go to the parser.
_FIRST_WORDS: Final[Mapping[str, tuple[str, bool, bool, bool]]] = {
    # WITH only if no data-modifying word follows (checked in prefilter)
    **dict.fromkeys(("select", "values", "table", "with"), ("SelectStmt", True, False, False)),
    "insert": ("InsertStmt", False, False, False),
    "update": ("UpdateStmt", False, False, False),
    "delete": ("DeleteStmt", False, False, False),
    **dict.fromkeys(("begin", "start"), ("TransactionStmt", False, True, True)),
    **dict.fromkeys(
        ("commit", "end", "rollback", "abort", "savepoint", "release"),
        ("TransactionStmt", False, True, False),
    ),
}
_PG_SPACE: Final = " \t\n\r\f\v"  # PostgreSQL's whitespace, narrower than str.isspace()
# Whitespace and comments, then the first word as PostgreSQL's lexer would see it. A comment
# holding "/*" (PostgreSQL nests them) stops the match, and the text goes to the parser.
_LEADING: Final = re.compile(
    r"(?:[ \t\n\r\f\v]++|--[^\n\r]*+|/\*(?:[^*/]|\*(?!/)|/(?!\*))*+\*/)*+"
    r"(?P<word>[a-z]++(?![a-z0-9_$\x80-\U0010ffff]))?",
    re.ASCII | re.IGNORECASE,
)
# Anywhere in the (lower-cased) text, these send it to the parser: calls with session effects,
# and U&"..." identifiers, which can spell any function name.
_SESSION_WORDS: Final = ("advisory", "set_config", "u&")
# Where ';' may be inside a literal, identifier or comment, naive splitting is not exact.
_QUOTING: Final = ("'", '"', "$", "--", "/*")
# In a text of SELECTs, these keywords may make it write or lock.
_READ_SPOILERS: Final = ("update", "share", "into", "insert", "delete", "merge")
# Writing functions' names; those starting "pg_" are only looked for if "pg_" occurs at all.
_ALL_NAMES: Final = tuple(sorted({*_WRITING_FUNCTIONS, *_WRITING_PREFIXES}))
_NAMES: Final = tuple(name for name in _ALL_NAMES if not name.startswith("pg_"))
_IDENTIFIER_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz_$")


def _may_write(low: str) -> bool:
    """Whether a lower-cased text of SELECTs may write or lock: a spoiler keyword anywhere, or
    a writing function's name where an identifier can start."""
    if any(word in low for word in _READ_SPOILERS):
        return True
    for name in _ALL_NAMES if "pg_" in low else _NAMES:
        at = low.find(name)
        while at >= 0:
            if at == 0 or (low[at - 1] not in _IDENTIFIER_CHARS and low[at - 1] < "\x80"):
                return True
            at = low.find(name, at + 1)
    return False


def _prefiltered(kinds: list[tuple[str, bool, bool, bool]]) -> Classification:
    return _intern(
        Classification(
            statement_types=tuple(kind[0] for kind in kinds),
            is_transaction_control=any(kind[2] for kind in kinds),
            starts_transaction=any(kind[3] for kind in kinds),
            read_only=all(kind[1] for kind in kinds),
        )
    )


_ONE_STATEMENT: Final = {word: _prefiltered([kind]) for word, kind in _FIRST_WORDS.items()}


def _statement_words(body: str) -> list[str] | None:
    """The lower-cased first word of each statement of ``body``; None if not sure of them."""
    if ";" in body:
        if any(marker in body for marker in _QUOTING):
            return None
        parts: list[str] = body.split(";")
    else:
        parts = [body]
    words = []
    for part in parts:
        match = _LEADING.match(part)
        word = match.group("word") if match else None
        if word is None:
            if match is not None and match.end() == len(part):
                continue  # an empty statement, as PostgreSQL skips it
            return None
        words.append(word.lower())
    return words


def prefilter(sql: str) -> Classification | None:
    """``classify(sql)``, answered without the parser, or None when the parser is needed.

    It answers for texts whose statements all start with a word of ``_FIRST_WORDS`` and that
    mention no call with session effects (``advisory``, ``set_config``) nor ``INTO`` followed
    by ``temp``. It does not check syntax: for a text PostgreSQL rejects, it may describe the
    statements that were meant, which is harmless since a rejected text changes nothing.
    """
    body = _truncate(sql).rstrip(_PG_SPACE + ";")
    low = body.lower()
    if any(word in low for word in _SESSION_WORDS):
        return None
    into = low.find("into")
    if into >= 0 and low.find("temp", into) >= 0:  # SELECT ... INTO TEMP creates a table
        return None
    words = _statement_words(body)
    if words is None or not all(word in _FIRST_WORDS for word in words):
        return None
    if not words:
        return NO_EFFECT
    kinds = [_FIRST_WORDS[word] for word in words]
    read_only = all(kind[1] for kind in kinds)
    if (read_only or "with" in words) and (not read_only or _may_write(low)):
        return None
    if "chain" in low and any(kind[2] for kind in kinds):  # COMMIT AND CHAIN starts one
        return None
    return _ONE_STATEMENT[words[0]] if len(words) == 1 else _prefiltered(kinds)


# --- the cache ------------------------------------------------------------------------------


class StatementCache:
    """Classifications of recently seen texts, keyed by the raw text (bytes or str).

    Bounded twice: at most ``max_entries`` texts and ``max_size`` characters/bytes of text
    (a text over a sixteenth of that is classified but not kept). Least recently used first out.
    ``hits``, ``misses`` and ``parses`` (misses the pre-filter could not answer) are counters
    for statistics.
    """

    __slots__ = ("_entries", "_size", "hits", "max_entries", "max_size", "misses", "parses")

    def __init__(self, max_entries: int = 10_000, max_size: int = 16 << 20) -> None:
        self._entries: OrderedDict[bytes | str, Classification] = OrderedDict()
        self._size = 0
        self.max_entries = max_entries
        self.max_size = max_size
        self.hits = self.misses = self.parses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, sql: bytes | str) -> Classification:
        """The classification of ``sql`` (bytes are read as UTF-8, bad bytes replaced)."""
        entries = self._entries
        found = entries.get(sql)
        if found is not None:
            entries.move_to_end(sql)
            self.hits += 1
            return found
        self.misses += 1
        text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else sql
        result = prefilter(text)
        if result is None:
            self.parses += 1
            result = classify(text)
        self._store(sql, result)
        return result

    def _store(self, sql: bytes | str, result: Classification) -> None:
        if len(sql) > self.max_size >> 4:
            return
        entries = self._entries
        entries[sql] = result
        self._size += len(sql)
        while len(entries) > self.max_entries or self._size > self.max_size:
            old, _ = entries.popitem(last=False)
            self._size -= len(old)


# --- fingerprints ---------------------------------------------------------------------------


def fingerprint(sql: str) -> str:
    """pglast's fingerprint of ``sql`` (16 hex digits, equal for texts that differ only in
    constants, whitespace or comments); for unparseable text, a hash of its words."""
    text = _truncate(sql)
    try:
        return _pg.fingerprint(text)
    except (_pg.ParseError, ValueError):
        normalized = " ".join(text.split()).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(normalized, digest_size=8).hexdigest()
