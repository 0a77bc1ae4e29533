"""Database URLs, password masking and one-shot connections.

Every URL the toolkit prints goes through `display_url`, so a password never
reaches output, logs or error messages.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, urlencode

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from waha_db.errors import UserError

DRIVER = "postgresql+psycopg"
ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")


class DatabaseUrlError(UserError):
    """The database URL is missing or not a PostgreSQL URL."""


UNENCODED_AT_MESSAGE = (
    "the database URL has more than one '@' before its host (not shown, as it may hold a password): "
    "an '@' inside the user name or the password must be percent-encoded as %40 "
    "(a password p@ss is written p%40ss in the URL)"
)


def _has_unencoded_at(database_url: str) -> bool:
    """Whether the part of a URL before its host holds an `@` of its own (an unencoded `@` in the password).

    Such a URL parses as a host made of the password's tail: printed, and looked up in DNS.
    Only the text before `?` counts (a query option may hold an `@`), unless the password
    itself holds a `?`: then the host SQLAlchemy reads holds the `@`.
    """
    _scheme, separator, rest = database_url.partition("://")
    if not separator:
        return False
    if rest.split("?", 1)[0].count("@") > 1:
        return True
    try:
        host = make_url(database_url).host
    except Exception:
        return False
    return "@" in (host or "")


def parse_url(database_url: str | URL) -> URL:
    """A SQLAlchemy URL on the psycopg 3 driver, from any accepted PostgreSQL URL form.

    A URL with an unencoded `@` in its password is refused before anything reads its host.
    """
    if isinstance(database_url, str) and _has_unencoded_at(database_url):
        raise DatabaseUrlError(UNENCODED_AT_MESSAGE)
    try:
        url = make_url(database_url)
    except Exception:
        # Not echoed: in text that is not a URL there is no telling which part is a password.
        raise DatabaseUrlError(
            "the database URL is not a URL (not shown, as it may hold a password); "
            "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise DatabaseUrlError(
            f"unsupported URL scheme {url.drivername!r}: use postgresql://, postgres:// or postgresql+psycopg://"
        )
    return url.set(drivername=DRIVER)


def display_url(url: URL | str) -> str:
    """The URL with its password replaced by `***`."""
    if isinstance(url, str):
        text = url
        if _has_unencoded_at(text):
            return mask_password(text)
        try:
            url = make_url(text)
        except Exception:
            return mask_password(text)
    if "password" not in url.query:
        return url.render_as_string(hide_password=True)
    # libpq takes a password as a query option too; rendered, `***` would be percent-encoded.
    shown = url.update_query_dict({"password": "***"}).render_as_string(hide_password=True)
    return shown.replace("password=%2A%2A%2A", "password=***")


# The password runs to the last `@` before the host, so an unencoded `@` in it hides no tail.
_PASSWORD_IN_TEXT = re.compile(r"(?P<head>[a-z0-9+.-]+://[^:/@\s]*:)(?P<password>\S*)(?=@[^@/\s]*(?:[/?#\s]|$))", re.I)
_PASSWORD_KEYWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.I)


def mask_password(text: str, password: str | None = None) -> str:
    """`text` with any URL password, `password=` keyword, or the known `password` masked."""
    if password:
        text = text.replace(password, "***")
    text = _PASSWORD_IN_TEXT.sub(lambda m: m.group("head") + "***", text)
    return _PASSWORD_KEYWORD.sub(lambda m: m.group("head") + "***", text)


def conninfo(url: URL | str) -> str:
    """A libpq connection URI (psycopg, psql, pg_dump, alembic -x database_url) from a database URL, password included.

    Every part is percent-encoded: SQLAlchemy renders a space in a password or a
    database name as it is, which libpq refuses. Query options (sslmode...) are kept.
    Never print it: it holds the password.
    """
    url = parse_url(url) if isinstance(url, str) else url
    userinfo = ""
    if url.username is not None:
        userinfo = quote(url.username, safe="")
        if url.password is not None:
            userinfo += ":" + quote(str(url.password), safe="")
        userinfo += "@"
    host = url.host or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    database = quote(url.database or "", safe="")
    query = f"?{urlencode(dict(url.query), doseq=True)}" if url.query else ""
    return f"postgresql://{userinfo}{host}{port}/{database}{query}"


# psycopg prepares a statement once it has run it five times on a connection, and uses the
# prepared statement after that. Behind a pooler in transaction mode (Supabase's on port 6543,
# PgBouncer before 1.21) the next transaction may run on another server connection, which
# has no such statement: "prepared statement "_pg3_0" does not exist". waha-db runs few
# statements per command, so it never prepares them, whatever the URL points at.
DRIVER_CONNECT_ARGS: dict[str, object] = {"connect_timeout": 10, "prepare_threshold": None}
DEFAULT_APPLICATION_NAME = "waha-db"


def create_engine(database_url: str | URL, *, application_name: str = DEFAULT_APPLICATION_NAME) -> sa.Engine:
    """An engine for one-shot work: no pool, psycopg 3, connect timeout of 10 s, no prepared
    statements (so it works through a transaction-mode pooler, see DRIVER_CONNECT_ARGS).

    Its connections carry `application_name` (e.g. "waha-db upgrade"), so a DBA sees
    a waha-db run in pg_stat_activity; an application_name in the URL's query wins.
    """
    url = parse_url(database_url) if isinstance(database_url, str) else database_url
    connect_args = dict(DRIVER_CONNECT_ARGS)
    if "application_name" not in url.query:
        connect_args["application_name"] = application_name
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)


def is_database_error(error: BaseException) -> bool:
    """Whether `error` came from the database or its driver (through SQLAlchemy or straight from psycopg)."""
    return isinstance(error, (sa.exc.DBAPIError, psycopg.Error))


def driver_error(error: BaseException) -> BaseException:
    """The driver's (psycopg's) own exception behind a SQLAlchemy wrapper; the error itself otherwise."""
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        return error.orig
    return error


def constraint_name(error: BaseException) -> str | None:
    """The constraint a database error names (a unique key, a CHECK...); None when it names none."""
    return getattr(getattr(driver_error(error), "diag", None), "constraint_name", None)


def database_message(error: BaseException) -> str:
    """PostgreSQL's own words for a database error, one line, password masked.

    The one place that reads a message out of a driver error (SQLAlchemy-wrapped or
    plain psycopg): the server's primary message when there is one, else the first
    line of the text.
    """
    original = driver_error(error)
    message = getattr(getattr(original, "diag", None), "message_primary", None)
    if not message:
        lines = [line.strip() for line in str(original).splitlines() if line.strip()]
        message = lines[0] if lines else "(no message)"
    return mask_password(message)


def describe_refusal(error: BaseException) -> str:
    """What the database refused, with its detail and hint, one per line, password masked."""
    diagnostic = getattr(driver_error(error), "diag", None)
    lines = [f"the database refused: {database_message(error)}"]
    for label in ("detail", "hint"):
        text = getattr(diagnostic, f"message_{label}", None)
        if text:
            lines.append(f"{label}: {text}")
    return mask_password("\n".join(lines))


# SQLSTATE classes of a server that cannot be reached or refuses us: 08 connection
# exception, 28 invalid authorization, 57P0x the server shutting down or starting.
_CONNECTION_SQLSTATES = ("08", "28", "57P01", "57P02", "57P03", "3D000")


def is_connection_failure(error: BaseException) -> bool:
    """Whether the server could not be reached (or refused us, or went away), rather than refusing a statement.

    A connection that never opened carries no SQLSTATE (refused, unknown host,
    timeout) or one of the classes above; SQLAlchemy marks a connection lost
    mid-command as invalidated.
    """
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    original = driver_error(error)
    if not isinstance(original, psycopg.OperationalError):
        return False
    sqlstate = original.sqlstate
    return sqlstate is None or sqlstate.startswith(_CONNECTION_SQLSTATES)


class ConnectionFailure(UserError):
    """The database could not be reached or refused us; the message is one line, password masked."""


def connection_target(url: URL | str) -> str:
    """`host:port, database NAME` of a URL, for messages (never the password)."""
    if isinstance(url, str):
        url = parse_url(url)
    host = url.host or os.environ.get("PGHOST") or "the local socket"
    port = url.port or os.environ.get("PGPORT") or 5432
    database = url.database or os.environ.get("PGDATABASE") or url.username or "(default)"
    return f"{host}:{port}, database {database}"


def describe_connection_failure(url: URL | str, error: BaseException) -> str:
    """One line: where we tried to connect and the server's (or the resolver's) reason, password masked.

    psycopg's message spans lines (`connection to server at ... failed: reason` then a
    tab-indented hint); the reason is the part after the last `failed:` of its first line.
    """
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    first, _, rest = text.partition("\n")
    reason = first.rsplit("failed:", 1)[-1].strip() or first
    reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason)
    hint = rest.strip().splitlines()[0].strip() if rest.strip() else ""
    password = url.password if isinstance(url, URL) else None
    message = f"cannot connect to PostgreSQL at {connection_target(url)}: {reason}"
    if hint:
        message += f" ({hint.rstrip('?.')}?)" if hint.endswith("?") else f" ({hint})"
    return mask_password(message, str(password) if password else None)


# What ended or cancelled work on a connection that was open, by SQLSTATE: (what it is, what happened).
_INTERRUPTIONS = {
    "57P01": (
        "terminated by an administrator",
        "the server ended this connection (pg_terminate_backend, or the server shutting down)",
    ),
    "57P02": (
        "connection lost",
        "the server ended this connection because another server process crashed, and restarts",
    ),
    "25P03": (
        "idle-in-transaction timeout",
        "the server ended this connection: its transaction sat idle longer than idle_in_transaction_session_timeout",
    ),
    "25P04": ("idle-session timeout", "the server ended this connection: it sat idle longer than idle_session_timeout"),
}
# How a connection that went away without a word from the server shows in psycopg's message.
_LOST = (
    "server closed the connection unexpectedly",
    "consuming input failed",
    "connection is lost",
    "the connection is closed",
)


def interruption(error: BaseException) -> tuple[str, str] | None:
    """What stopped work on a connection that was open, as (its name, what happened); None when `error` is
    not that (a refusal of a statement, or a connection that never opened).

    Named as what it is: terminated by an administrator (pg_terminate_backend), connection
    lost (the server went away, crashed, or the network), a statement timeout, a
    cancellation, an idle(-in-transaction) timeout.
    """
    original = driver_error(error)
    if not isinstance(original, psycopg.Error):
        return None
    sqlstate = getattr(original, "sqlstate", None)
    reason = database_message(error)
    if sqlstate in _INTERRUPTIONS:
        name, what = _INTERRUPTIONS[sqlstate]
        return name, f"{what}: {reason}"
    if sqlstate == "57014":
        if "statement timeout" in reason:
            return "statement timeout", f"a statement ran longer than statement_timeout allows: {reason}"
        return "cancelled", f"a statement was cancelled (pg_cancel_backend, or an interrupt): {reason}"
    text = str(original)
    lost = isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
    if lost or (isinstance(original, psycopg.OperationalError) and any(words in text for words in _LOST)):
        if "connection to server at" in text and "failed:" in text:
            return None  # a connection that never opened: describe_connection_failure's
        return "connection lost", f"the connection to the server went away: {reason}"
    return None


class Interrupted(UserError):
    """Work stopped on a connection that was open (see `interruption`); the message says what, and what it did."""


def describe_interruption(
    url: URL | str, error: BaseException, *, command: str, rolled_back: bool | None = None
) -> str | None:
    """One paragraph for an interruption (`interruption`): what it was, where, and, when the caller knows,
    whether its transaction was rolled back (nothing changed) or may have committed; None when not one."""
    found = interruption(error)
    if found is None:
        return None
    name, what = found
    message = f"{name}: {what} (PostgreSQL at {connection_target(url)}, while `{command}` ran)."
    if rolled_back is True:
        message += " Its transaction was rolled back: nothing was changed. Run it again."
    elif rolled_back is False:
        message += (
            " It happened while the transaction was committing: the change may or may not have been made. "
            "`waha-db status` shows where the database stands."
        )
    password = url.password if isinstance(url, URL) else None
    return mask_password(message, str(password) if password else None)


def connect_engine(database_url: str | URL, *, application_name: str = DEFAULT_APPLICATION_NAME) -> sa.Engine:
    """An engine whose first connection has succeeded; `ConnectionFailure` (one line) when it cannot.

    Commands call this before any work so that an unreachable server, a wrong password
    or an unknown host is reported once, plainly, instead of as a driver traceback; and
    a server older than waha-db supports is refused (`UnsupportedServer`) before anything
    is read or changed.
    """
    url = parse_url(database_url) if isinstance(database_url, str) else database_url
    engine = create_engine(url, application_name=application_name)
    try:
        with engine.connect() as connection:
            require_supported_server(connection)
    except sa.exc.OperationalError as error:
        engine.dispose()
        # Connected, then a statement of the driver's first exchange timed out (a tiny statement_timeout).
        said = describe_interruption(url, error, command=application_name)
        if said is not None:
            raise Interrupted(said) from None
        raise ConnectionFailure(describe_connection_failure(url, error)) from None
    except UnsupportedServer:
        engine.dispose()
        raise
    return engine


# --- the server's version ---------------------------------------------------------------

# The oldest PostgreSQL waha-db runs on, as server_version_num. The suite runs on 15, 16
# and 18; 17 lies between them, and what it introduced (the MAINTAIN privilege) is in 18.
# 13 and 14 are refused rather than trusted unseen: no build of them can be tested here,
# and drift compares catalogs as the server renders them. Below 13 the migrations cannot
# run at all (gen_random_uuid(), the ids' default, is built in from 13 on).
MINIMUM_SERVER_VERSION = 150000
TESTED_MAJOR_VERSIONS = (15, 16, 18)


class UnsupportedServer(UserError):
    """The PostgreSQL server is older than waha-db supports; the message says what to do."""


def version_number(version: str) -> int:
    """server_version_num from a version's text: '18.6' -> 180006, '15.18 (Debian ...)' -> 150018, '9.6.24' -> 90624."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        raise ValueError(f"not a PostgreSQL version: {version!r}")
    major, minor, patch = (int(part or 0) for part in match.groups())
    return major * 10000 + minor if major >= 10 else major * 10000 + minor * 100 + patch


def minimum_major_version() -> int:
    """15: the oldest major version of PostgreSQL that waha-db supports."""
    return MINIMUM_SERVER_VERSION // 10000


def unsupported_server_reason(version_num: int, version: str) -> str | None:
    """Why waha-db refuses a server of this version; None when it supports it. Pure."""
    if version_num >= MINIMUM_SERVER_VERSION:
        return None
    tested = ", ".join(str(major) for major in TESTED_MAJOR_VERSIONS[:-1]) + f" and {TESTED_MAJOR_VERSIONS[-1]}"
    reason = (
        f"PostgreSQL {version} is older than waha-db supports: it needs PostgreSQL "
        f"{minimum_major_version()} or later (tested on {tested})"
    )
    if version_num < 130000:
        reason += "; before 13, gen_random_uuid(), the default of every id, is not even built in"
    return reason


def require_supported_version(version_num: int, version: str, remedy: str | None = None) -> None:
    """UnsupportedServer, saying why and what to do (`remedy`), when waha-db does not support this version."""
    reason = unsupported_server_reason(version_num, version)
    if reason:
        remedy = remedy or (
            f"Nothing was done. Upgrade the server to PostgreSQL {minimum_major_version()} or later first "
            "(pg_upgrade, or your provider's major-version upgrade), then run waha-db again."
        )
        raise UnsupportedServer(f"{reason}. {remedy}")


def server_version(connection: sa.Connection) -> tuple[int, str]:
    """The server's version as (server_version_num, text): (180006, '18.6').

    Read from what the driver learnt when it connected: no statement is run, so this is
    safe on a connection that Alembic has yet to begin its transaction on.
    """
    parts = connection.dialect.server_version_info
    if parts is None:  # set by the dialect on its first connection, which a Connection has made
        raise RuntimeError("the server's version is unknown: no connection has been made yet")
    text = ".".join(str(part) for part in parts)
    return version_number(text), text


def require_supported_server(connection: sa.Connection) -> str:
    """The server's version, e.g. '18.6'; UnsupportedServer (what to do included) when it is too old."""
    number, text = server_version(connection)
    require_supported_version(number, text)
    return text
