"""Database URLs, password masking and one-shot connections.

Every URL the toolkit prints goes through `display_url`, so a password never
reaches output, logs or error messages.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

DRIVER = "postgresql+psycopg"
ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")


class DatabaseUrlError(ValueError):
    """The database URL is missing or not a PostgreSQL URL."""


def resolve_url(database_url: str | None) -> str:
    """The URL given explicitly, else `DATABASE_URL`; an error that says how to give one."""
    url = database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise DatabaseUrlError(
            "no database given: pass --database-url postgresql://USER@HOST:PORT/DBNAME "
            "or set DATABASE_URL"
        )
    return url


def parse_url(database_url: str) -> URL:
    """A SQLAlchemy URL on the psycopg 3 driver, from any accepted PostgreSQL URL form."""
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
            f"unsupported URL scheme {url.drivername!r}: use postgresql://, postgres:// "
            "or postgresql+psycopg://"
        )
    return url.set(drivername=DRIVER)


def display_url(url: URL | str) -> str:
    """The URL with its password replaced by `***`."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except Exception:
            return mask_password(url)
    return url.render_as_string(hide_password=True)


_PASSWORD_IN_TEXT = re.compile(r"(?P<head>[a-z0-9+.-]+://[^:/@\s]*:)(?P<password>[^@\s]*)(?=@)", re.I)
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


def create_engine(database_url: str | URL) -> sa.Engine:
    """An engine for one-shot work: no pool, psycopg 3, connect timeout of 10 s."""
    url = parse_url(database_url) if isinstance(database_url, str) else database_url
    return sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})


class ConnectionFailure(RuntimeError):
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


def connect_engine(database_url: str | URL) -> sa.Engine:
    """An engine whose first connection has succeeded; `ConnectionFailure` (one line) when it cannot.

    Commands call this before any work so that an unreachable server, a wrong password
    or an unknown host is reported once, plainly, instead of as a driver traceback.
    """
    url = parse_url(database_url) if isinstance(database_url, str) else database_url
    engine = create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as error:
        engine.dispose()
        raise ConnectionFailure(describe_connection_failure(url, error)) from None
    return engine
