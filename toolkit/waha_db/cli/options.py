"""Options more than one command group takes: --owner, --lock-timeout, --yes, and how a round asks the servers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import click

from waha_db.fleet.transport import DEFAULT_CONCURRENCY, DEFAULT_PER_HOST
from waha_db.lifecycle import locks, migrate

Command = TypeVar("Command", bound=Callable[..., Any])


class OwnerType(click.ParamType[uuid.UUID | None]):
    """--owner: a user's UUID in its usual form, by the migrations' own rule (waha_db.lifecycle.migrate.parse_owner)."""

    name = "UUID"

    def convert(
        self, value: uuid.UUID | str, param: click.Parameter | None, ctx: click.Context | None
    ) -> uuid.UUID | None:
        if isinstance(value, uuid.UUID):
            return value
        try:
            return migrate.parse_owner(value, given_as="--owner")
        except migrate.LegacyConversionRefused as error:
            self.fail(str(error), param, ctx)  # a bad value: exit 2, as --help says


OWNER = OwnerType()
LOCK_TIMEOUT = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0, max=86400, min_open=True, max_open=True),
    default=locks.DEFAULT_LOCK_TIMEOUT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help=f"Overall limit of the waits for locks. Each attempt waits at most {locks.ATTEMPT_LOCK_TIMEOUT_SECONDS:g} s "
    "for a table lock (the longest the app's statements queue behind it), then is rolled back and retried.",
)
YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")


def round_options(command: Command) -> Command:
    """--concurrency, --per-host and --deadline: how a round asks the servers (waha_db.fleet.rounds)."""
    options = [
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=DEFAULT_CONCURRENCY,
            show_default=True,
            help="Requests in flight at once, in all (capped by the open-files limit).",
        ),
        click.option(
            "--per-host",
            type=click.IntRange(min=1),
            default=DEFAULT_PER_HOST,
            show_default=True,
            help="Requests in flight at once to one address (scheme, host, port).",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(min=1),
            default=60,
            show_default=True,
            metavar="SECONDS",
            help="A round ends this long after it starts; a server not done by then is reported as failing.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
