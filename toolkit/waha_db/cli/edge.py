"""The edge every command shares: the database of the invocation, the library's errors in one line, confirmation.

`library_errors` is the one place a library error becomes what the user sees: one
message, exit status 1 (2 for a missing or malformed database URL), never a
traceback and never a password. `carry_out` is how every command that changes the
schema shows its plan, asks, and runs it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import click
import sqlalchemy as sa
from alembic.util import CommandError

from waha_db import database
from waha_db.errors import UserError
from waha_db.lifecycle import plan as plans
from waha_db.lifecycle import status as database_status

P = ParamSpec("P")
R = TypeVar("R")
Planned = TypeVar("Planned", bound=plans.Change)


class Refused(click.ClickException):
    """The command will not do what was asked (no confirmation, a problem in the plan)."""


class BadDatabaseUrl(click.ClickException):
    """No database URL, or a malformed one: a usage error (exit 2), said in one line, never showing the URL."""

    exit_code = 2


@dataclass
class Invocation:
    """What the top-level options say for every command: the database, parsed once when first needed."""

    database_url: str | None  # --database-url or DATABASE_URL, as given
    _url: sa.URL | None = None
    requires_schema: bool = False  # the command works on the V2.1 tables (servers, sessions, monitor)

    @property
    def given(self) -> bool:
        return self.database_url is not None

    @property
    def url(self) -> sa.URL:
        """The database's URL; DatabaseUrlError (how to give one) when none or a malformed one was given."""
        if self._url is None:
            if not self.database_url:
                raise database.DatabaseUrlError(
                    "no database given: pass --database-url postgresql://USER@HOST:PORT/DBNAME or set DATABASE_URL"
                )
            self._url = database.parse_url(self.database_url)
        return self._url

    @contextmanager
    def engine(self) -> Iterator[sa.Engine]:
        """An engine on the database whose connection has been proven (one clear line otherwise).

        Its connections are named after the command ("waha-db upgrade") in pg_stat_activity.
        """
        engine = database.connect_engine(self.url, application_name=application_name())
        try:
            if self.requires_schema:
                with engine.connect() as connection:
                    database_status.require_upgraded(connection)
            yield engine
        finally:
            engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        with self.engine() as engine, engine.begin() as connection:
            yield connection


pass_invocation = click.make_pass_decorator(Invocation)


def application_name() -> str:
    """`waha-db upgrade`, `waha-db servers list`...: the command running, as pg_stat_activity shows it."""
    context = click.get_current_context(silent=True)
    words = context.command_path.split()[1:] if context is not None else []
    return " ".join([database.DEFAULT_APPLICATION_NAME, *words])


def library_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the library's errors into one-line ClickExceptions (exit 1), passwords masked.

    A connection lost, terminated or timed out after it opened is named as what it
    is (`describe_interruption`); a server that cannot be reached is
    `describe_connection_failure`'s one line; any other database error is what the
    database refused, with its detail and hint.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except database.DatabaseUrlError as error:
            raise BadDatabaseUrl(str(error)) from None
        except (UserError, CommandError) as error:  # CommandError: Alembic's own (an unknown revision for --sql)
            raise click.ClickException(database.mask_password(str(error))) from None
        except Exception as error:
            if not database.is_database_error(error):
                raise
            invocation = click.get_current_context().find_object(Invocation)
            url = invocation._url if invocation else None
            said = database.describe_interruption(url, error, command=application_name()) if url is not None else None
            if said is not None:
                raise click.ClickException(said) from None
            if url is not None and database.is_connection_failure(error):
                raise click.ClickException(database.describe_connection_failure(url, error)) from None
            raise click.ClickException(database.describe_refusal(error)) from None

    return wrapper


def can_ask() -> bool:
    """Whether a person can answer a confirmation: stdin is a terminal."""
    return sys.stdin.isatty()


def require_confirmation(question: str, yes: bool, action: str) -> None:
    """Return once confirmed (--yes, or a person's answer); Refused, nothing done, otherwise."""
    if yes:
        return
    if not can_ask():
        raise Refused(
            f"not confirmed: there is no terminal to ask on, so nothing was done; pass --yes to {action} without asking"
        )
    if not click.confirm(question, default=False):
        raise Refused("not confirmed: nothing was done")


def carry_out(
    invocation: Invocation,
    make_plan: Callable[[sa.Connection], Planned],
    run: Callable[[sa.Connection, Planned, float], None],
    yes: bool,
    lock_timeout: float,
) -> None:
    """Show the plan, refuse on its problems, ask, run it (retrying on locks), then its notices and that it is done.

    The server's notices are printed only once the run has committed: a run that is
    rolled back said nothing that happened.
    """

    def confirm(plan: Planned) -> bool:
        for line in plan.header():
            click.echo(line)
        if plan.problems:
            raise Refused(plan.refusal())
        if plan.nothing_to_do:
            return False
        for line in plan.describe():
            click.echo(line)
        require_confirmation(plan.question, yes, plan.action)
        return True

    with invocation.engine() as engine:
        click.echo(f"database: {database.display_url(invocation.url)}")
        outcome = plans.carry_out(
            engine,
            make_plan,
            confirm,
            run,
            lock_timeout=lock_timeout,
            progress=lambda line: click.echo(database.mask_password(line), err=True),
            command=application_name(),
        )
    for notice in outcome.notices:
        click.echo(f"  notice: {database.mask_password(notice)}")
    if outcome.note:
        click.echo(outcome.note)
    if outcome.seconds is not None:
        click.echo(outcome.plan.done(outcome.seconds))
