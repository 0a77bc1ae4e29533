"""The schema's lifecycle: upgrade, downgrade, adopt, history, sql, status, repair (waha_db.lifecycle)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import click
import sqlalchemy as sa

from waha_db import database
from waha_db.cli.edge import Invocation, carry_out, library_errors, pass_invocation
from waha_db.cli.options import LOCK_TIMEOUT, OWNER, YES
from waha_db.lifecycle import adopt as adoption
from waha_db.lifecycle import migrate, revisions
from waha_db.lifecycle import plan as plans
from waha_db.lifecycle import repair as repairs
from waha_db.lifecycle import status as database_status


@click.command()
@click.argument("revision", default="head")
@click.option(
    "--owner",
    type=OWNER,
    metavar="UUID",
    help="The user who will own the WAHA server converted from the legacy waha_config.",
)
@click.option("--sql", "offline", is_flag=True, help="Print the SQL script instead of running it (no database needed).")
@YES
@LOCK_TIMEOUT
@pass_invocation
@library_errors
def upgrade(
    invocation: Invocation, revision: str, owner: uuid.UUID | None, offline: bool, yes: bool, lock_timeout: float
) -> None:
    """Upgrade the database to REVISION (default: head), after showing the plan.

    The plan: the current revision, the revisions to apply, and whether the legacy
    singleton waha_config will be converted into a server, and for which user
    (--owner). It asks for confirmation; without a terminal it refuses unless --yes.
    The whole upgrade is one transaction: a failure leaves the database as it was.

    --sql prints the script instead (nothing is run; no database needed); an owner
    given with --owner is written into it, otherwise set it in psql first with
    SET waha.config_owner = 'UUID'.

    \b
    Example:
      waha-db upgrade                                   # to head, asks first
      waha-db upgrade --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --yes
      waha-db upgrade --sql --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 > upgrade.sql
    """
    if offline:
        click.echo(migrate.offline_sql(revision, owner=owner), nl=False)
        return
    carry_out(
        invocation,
        lambda connection: plans.plan_upgrade(connection, revision, owner),
        lambda connection, plan, attempt: migrate.upgrade(
            connection, plan.target_name, owner=plan.owner, lock_timeout=attempt
        ),
        yes,
        lock_timeout,
    )


@click.command()
@click.argument("revision")
@click.option("--sql", "offline", is_flag=True, help="Print the SQL script instead of running it (needs no database).")
@YES
@LOCK_TIMEOUT
@pass_invocation
@library_errors
def downgrade(invocation: Invocation, revision: str, offline: bool, yes: bool, lock_timeout: float) -> None:
    """Downgrade the database to REVISION ("base": remove everything), after saying what data it removes.

    The plan names the revisions undone and the data lost with row counts (e.g.
    "drops waha_sessions (12 rows) and waha_servers (3 rows)"). It asks for
    confirmation; without a terminal it refuses unless --yes. One transaction.

    --sql prints the script from head down to REVISION (no database needed).

    \b
    Example:
      waha-db downgrade 0004
      waha-db downgrade base --yes
      waha-db downgrade 0004 --sql > downgrade.sql
    """
    if offline:
        click.echo(migrate.offline_sql(revision, start=revisions.head(), downgrade_to=True), nl=False)
        return
    carry_out(
        invocation,
        lambda connection: plans.plan_downgrade(connection, revision),
        lambda connection, plan, attempt: migrate.downgrade(connection, plan.target_name, lock_timeout=attempt),
        yes,
        lock_timeout,
    )


@click.command()
@click.option(
    "--owner",
    type=OWNER,
    metavar="UUID",
    help="The user who owns the server of a legacy waha_config left beside the tables.",
)
@YES
@LOCK_TIMEOUT
@pass_invocation
@library_errors
def adopt(invocation: Invocation, owner: uuid.UUID | None, yes: bool, lock_timeout: float) -> None:
    """Bring a V2.1 database made by hand (from the seed's SQL, no Alembic) under management.

    Checks its tables column by column and row by row against V2.1. Where they are
    compatible it rebuilds them in the head shape (constraints, indexes, triggers,
    function, grants, row security) keeping every row, and records the head
    revision, in one transaction; where not, it lists every problem and changes
    nothing. It asks for confirmation; without a terminal it refuses unless --yes.

    \b
    Example:
      waha-db adopt            # shows the plan, asks
      waha-db adopt --yes --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """

    def run(connection: sa.Connection, plan: adoption.AdoptionPlan, attempt: float) -> None:
        adoption.adopt(connection, owner, lock_timeout=attempt, plan=plan)

    carry_out(invocation, lambda connection: adoption.plan_adoption(connection, owner), run, yes, lock_timeout)


@click.command()
@pass_invocation
@library_errors
def history(invocation: Invocation) -> None:
    """The revisions, oldest first, one line each; the database's current one is marked when a database is given.

    \b
    Example:
      waha-db history
      waha-db --database-url postgresql://postgres@127.0.0.1/app history
    """
    current = None
    if invocation.given:
        with invocation.engine() as engine, engine.connect() as connection:
            current = revisions.current_revision(connection)
    for line in revisions.describe_history(current):
        click.echo(line)
    if invocation.given and current is None:
        click.echo("(no revision recorded in this database)")


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: sql/schema.sql of the repository checkout); '-' for stdout.",
)
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 when the file differs from what the migrations generate."
)
@library_errors
def sql(output: Path | None, check: bool) -> None:
    """Write the full V2.1 schema for fresh installs, generated from the migrations.

    Apply it with psql -v ON_ERROR_STOP=1 -f sql/schema.sql; it records the head
    revision, so `waha-db upgrade` manages that database afterwards.

    \b
    Example:
      waha-db sql                       # regenerate sql/schema.sql
      waha-db sql --check               # CI: fail when sql/schema.sql is stale
      waha-db sql -o - | psql -v ON_ERROR_STOP=1 -d app
    """
    path = output or migrate.checkout_schema_file()
    if path is None:
        raise click.UsageError(
            "waha-db runs from an installed package, not a repository checkout: give --output FILE (or '-' for stdout)"
        )
    to_stdout = str(path) == "-"
    if check and to_stdout:
        raise click.UsageError("--check needs a file, not '-'")
    if not to_stdout and not check and not path.parent.is_dir():
        raise click.BadParameter(
            f"the folder {path.parent} does not exist: create it first (nothing was written)", param_hint="'--output'"
        )
    if check:
        migrate.check_full_schema(path)
        click.echo(f"{path} is up to date (revision {revisions.head()})")
    elif to_stdout:
        click.echo(migrate.full_schema_sql(), nl=False)
    else:
        migrate.write_full_schema(path)
        click.echo(f"wrote {path} (revision {revisions.head()})")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option("--check", is_flag=True, help="Exit 1 unless the database is at head with no drift (for deploy scripts).")
@pass_invocation
@library_errors
def status(invocation: Invocation, as_json: bool, check: bool) -> None:
    """What state the database is in, and the one command to run next.

    empty; legacy V1 (with or without a server to convert); V2.1 made by hand
    (adoptable or not, and why); managed at revision X with N revisions pending; at
    head; or drifted from head, with what differs (a missing index, a changed
    column, a missing policy...) and the statements `waha-db repair` restores it
    with. The `next:` command works as printed, or fails with exactly the refusal
    shown above it, whose fix is shown too.

    \b
    Example:
      waha-db status
      waha-db status --check && echo "at head, no drift"
      waha-db status --json | jq .state
    """
    with invocation.engine() as engine, engine.connect() as connection:
        report = database_status.database_status(connection)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"database: {database.display_url(invocation.url)}")
        click.echo(f"server: PostgreSQL {report.server_version}")
        click.echo(f"state: {report.summary}")
        for line in report.details:
            click.echo(f"  {line}")
        if report.next:
            click.echo(f"next: {report.next}")
    if check and not report.at_head:
        raise click.ClickException(f"not at head without drift: {report.summary}")


@click.command()
@YES
@LOCK_TIMEOUT
@pass_invocation
@library_errors
def repair(invocation: Invocation, yes: bool, lock_timeout: float) -> None:
    """Restore head's definitions of the WAHA objects that drifted: grants, indexes, policies, functions, triggers.

    Shows the drift and the statements (e.g. REVOKE ALL ON TABLE public.waha_sessions
    FROM authenticated; GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE ... after the
    seed's GRANT ALL, which lets any signed-in user TRUNCATE), asks, runs them in one
    transaction. Differences only a person can undo (a column, a constraint, an extra
    index) are listed and nothing is run. Without a terminal it refuses unless --yes.

    \b
    Example:
      waha-db status          # drifted? it shows the statements
      waha-db repair          # shows them again, asks, runs them
    """
    carry_out(
        invocation,
        repairs.plan_repair,
        lambda connection, plan, attempt: repairs.repair(connection, plan, lock_timeout=attempt),
        yes,
        lock_timeout,
    )
