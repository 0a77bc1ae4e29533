"""Database URLs, password masking and one-shot connections.

Every URL the toolkit prints goes through `display_url`, so a password never
reaches output, logs or error messages.
"""

from __future__ import annotations

import os
import re

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
        raise DatabaseUrlError(
            f"not a database URL: {mask_password(database_url)!r}; "
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


def create_engine(database_url: str | URL) -> sa.Engine:
    """An engine for one-shot work: no pool, psycopg 3, connect timeout of 10 s."""
    url = parse_url(database_url) if isinstance(database_url, str) else database_url
    return sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
