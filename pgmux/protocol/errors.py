"""Errors a client can see, each carrying its SQLSTATE.

Two kinds, kept apart on purpose: a :class:`PgmuxError` is raised by pgmux itself (pool full,
bad packet, wrong password) and is turned into an ErrorResponse that pgmux writes; a
:class:`ServerError` is an ErrorResponse that came from PostgreSQL and is only ever forwarded or
reported, never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# SQLSTATE codes pgmux emits itself, named as in PostgreSQL's errcodes.txt.
PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
CONNECTION_EXCEPTION = "08000"
SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION = "08001"
SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION = "08004"
INVALID_AUTHORIZATION_SPECIFICATION = "28000"
INVALID_PASSWORD = "28P01"
INVALID_CATALOG_NAME = "3D000"
TOO_MANY_CONNECTIONS = "53300"
FEATURE_NOT_SUPPORTED = "0A000"
ADMIN_SHUTDOWN = "57P01"
CANNOT_CONNECT_NOW = "57P03"
QUERY_CANCELED = "57014"
IDLE_IN_TRANSACTION_SESSION_TIMEOUT = "25P03"
IDLE_SESSION_TIMEOUT = "57P05"
INSUFFICIENT_PRIVILEGE = "42501"
SYNTAX_ERROR = "42601"
UNDEFINED_OBJECT = "42704"
INVALID_PARAMETER_VALUE = "22023"
INTERNAL_ERROR = "XX000"
PROGRAM_LIMIT_EXCEEDED = "54000"
INVALID_SQL_STATEMENT_NAME = "26000"
ACTIVE_SQL_TRANSACTION = "25001"


@dataclass
class PgmuxError(Exception):
    """An error pgmux reports to a client as an ErrorResponse.

    ``severity`` is ERROR for errors the session survives and FATAL for those after which pgmux
    closes the connection, as PostgreSQL does.
    """

    sqlstate: str
    message: str
    severity: str = "FATAL"
    detail: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.severity} {self.sqlstate}: {self.message}"


@dataclass
class ServerError(Exception):
    """An ErrorResponse received from PostgreSQL, kept as its raw fields."""

    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", INTERNAL_ERROR)

    @property
    def severity(self) -> str:
        return self.fields.get("V", self.fields.get("S", "ERROR"))

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    def __str__(self) -> str:
        return f"{self.severity} {self.sqlstate}: {self.message}"
