"""`waha-db`: the command line of the toolkit, for DBAs and CI.

A thin layer: each command parses its options, calls one library function, and
prints what it returns. Library errors become `click.ClickException` here, at the
edge, and only here (`library_errors`): the user sees one message, exit status 1,
never a traceback and never a password.

To add a command: write the library function first (docs/ARCHITECTURE.md says in
which room), then a function here decorated with `@main.command()` (or the group's
`.command()`) and `@library_errors`, whose docstring is its --help text and ends
with an `Example:` block.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from alembic.util import CommandError

from waha_db import database
from waha_db.checks import bench as benchmark
from waha_db.checks import fleet_bench as fleet_benchmark
from waha_db.checks import verify as verification
from waha_db.checks.pgtemp import find_server_binaries
from waha_db.errors import UserError
from waha_db.fleet import allocation, fleet_summary, health, live, live_report, selection
from waha_db.fleet import monitor as fleet_monitor
from waha_db.fleet import servers as server_admin
from waha_db.fleet import workers as fleet_workers
from waha_db.fleet.progress import terminal_progress
from waha_db.fleet.transport import DEFAULT_CONCURRENCY, DEFAULT_PER_HOST
from waha_db.lifecycle import adopt as adoption
from waha_db.lifecycle import export as exporting
from waha_db.lifecycle import locks, migrate, revisions
from waha_db.lifecycle import plan as plans
from waha_db.lifecycle import repair as repairs
from waha_db.lifecycle import status as database_status


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
    def engine(self):
        """An engine on the database whose connection has been proven (one clear line otherwise).

        Its connections are named after the command ("waha-db upgrade") in pg_stat_activity.
        """
        engine = database.connect_engine(self.url, application_name=_application_name())
        try:
            if self.requires_schema:
                with engine.connect() as connection:
                    database_status.require_upgraded(connection)
            yield engine
        finally:
            engine.dispose()

    @contextmanager
    def transaction(self):
        with self.engine() as engine, engine.begin() as connection:
            yield connection


def _application_name() -> str:
    """`waha-db upgrade`, `waha-db servers list`...: the command running, as pg_stat_activity shows it."""
    context = click.get_current_context(silent=True)
    words = context.command_path.split()[1:] if context is not None else []
    return " ".join([database.DEFAULT_APPLICATION_NAME, *words])


def library_errors(command):
    """Turn the library's errors into one-line ClickExceptions (exit 1), passwords masked.

    A connection lost, terminated or timed out after it opened is named as what it
    is (`describe_interruption`); a server that cannot be reached is
    `describe_connection_failure`'s one line; any other database error is what the
    database refused, with its detail and hint.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
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
            said = database.describe_interruption(url, error, command=_application_name()) if url is not None else None
            if said is not None:
                raise click.ClickException(said) from None
            if url is not None and database.is_connection_failure(error):
                raise click.ClickException(database.describe_connection_failure(url, error)) from None
            raise click.ClickException(database.describe_refusal(error)) from None

    return wrapper


def _can_ask() -> bool:
    """Whether a person can answer a confirmation: stdin is a terminal."""
    return sys.stdin.isatty()


def _confirm(question: str, yes: bool, action: str) -> None:
    if yes:
        return
    if not _can_ask():
        raise Refused(
            f"not confirmed: there is no terminal to ask on, so nothing was done; pass --yes to {action} without asking"
        )
    if not click.confirm(question, default=False):
        raise Refused("not confirmed: nothing was done")


def _carry_out(invocation: Invocation, make_plan, run, yes: bool, lock_timeout: float) -> None:
    """Show the plan, refuse on its problems, ask, run it (retrying on locks), then its notices and that it is done.

    The server's notices are printed only once the run has committed: a run that is
    rolled back said nothing that happened.
    """

    def confirm(plan: plans.Change) -> bool:
        for line in plan.header():
            click.echo(line)
        if plan.problems:
            raise Refused(plan.refusal())
        if plan.nothing_to_do:
            return False
        for line in plan.describe():
            click.echo(line)
        _confirm(plan.question, yes, plan.action)
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
            command=_application_name(),
        )
    for notice in outcome.notices:
        click.echo(f"  notice: {database.mask_password(notice)}")
    if outcome.note:
        click.echo(outcome.note)
    if outcome.seconds is not None:
        click.echo(outcome.plan.done(outcome.seconds))


class OwnerType(click.ParamType):
    """--owner: a user's UUID in its usual form, by the migrations' own rule (waha_db.lifecycle.migrate.parse_owner)."""

    name = "UUID"

    def convert(self, value, param, ctx):
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


# --- the top-level group -------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="postgresql://USER:PASSWORD@HOST:PORT/DBNAME (postgres:// and postgresql+psycopg:// too); "
    "default: $DATABASE_URL.",
)
@click.version_option(package_name="waha-db")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """Take a PostgreSQL or Supabase database to the WAHA multi-server schema V2.1, and keep it there.

    The database comes from --database-url or DATABASE_URL; a password in it is never
    printed.

    \b
    Exit status:
      0  success
      1  any failure: a refusal, a failed check, a database error, a server that
         cannot be reached (one line on stderr says which)
      2  a usage error (unknown option, bad value)

    \b
    Example:
      waha-db verify                                   # CI: every check, on a throwaway PostgreSQL
      export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/app
      waha-db status
      waha-db upgrade --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """
    ctx.obj = Invocation(database_url)


pass_invocation = click.make_pass_decorator(Invocation)


# --- migrations ------------------------------------------------------------------------------


@main.command()
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
def upgrade(invocation, revision, owner, offline, yes, lock_timeout):
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
    _carry_out(
        invocation,
        lambda connection: plans.plan_upgrade(connection, revision, owner),
        lambda connection, plan, attempt: migrate.upgrade(
            connection, plan.target, owner=plan.owner, lock_timeout=attempt
        ),
        yes,
        lock_timeout,
    )


@main.command()
@click.argument("revision")
@click.option("--sql", "offline", is_flag=True, help="Print the SQL script instead of running it (needs no database).")
@YES
@LOCK_TIMEOUT
@pass_invocation
@library_errors
def downgrade(invocation, revision, offline, yes, lock_timeout):
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
    _carry_out(
        invocation,
        lambda connection: plans.plan_downgrade(connection, revision),
        lambda connection, plan, attempt: migrate.downgrade(connection, plan.target_name, lock_timeout=attempt),
        yes,
        lock_timeout,
    )


@main.command()
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
def adopt(invocation, owner, yes, lock_timeout):
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
    _carry_out(
        invocation,
        lambda connection: adoption.plan_adoption(connection, owner),
        lambda connection, plan, attempt: adoption.adopt(connection, owner, lock_timeout=attempt, plan=plan),
        yes,
        lock_timeout,
    )


@main.command()
@pass_invocation
@library_errors
def history(invocation):
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


@main.command()
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
def sql(output, check):
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


# --- state of a database ------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option("--check", is_flag=True, help="Exit 1 unless the database is at head with no drift (for deploy scripts).")
@pass_invocation
@library_errors
def status(invocation, as_json, check):
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


@main.command()
@YES
@LOCK_TIMEOUT
@pass_invocation
@library_errors
def repair(invocation, yes, lock_timeout):
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
    _carry_out(
        invocation,
        repairs.plan_repair,
        lambda connection, plan, attempt: repairs.repair(connection, plan, lock_timeout=attempt),
        yes,
        lock_timeout,
    )


# --- CI -------------------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of one line per check.")
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Also write the report as JUnit XML (for CI test reports).",
)
@click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WAHA_DB_PG_BIN",
    metavar="DIR",
    help="The bin directory (initdb, postgres) of the PostgreSQL the throwaway server runs, e.g. the major "
    "version of your production server; default $WAHA_DB_PG_BIN, else PATH and the newest "
    "/usr/lib/postgresql/*/bin.",
)
@pass_invocation
@library_errors
def verify(invocation, as_json, junit_xml, pg_bin):
    """Check that the migrations are sound: the CI command.

    Without a database URL it starts a throwaway PostgreSQL and checks on two fresh
    databases, plain and Supabase-like. With one it refuses a database that is not
    empty, runs there, and leaves it empty. Checks: one head; upgrade to head;
    metadata equals the migrated database; no drift from the recorded head catalog;
    security rules; the seed's examples and the selection rules; every revision
    up/down/up; downgrade to base; offline SQL equals online; sql/schema.sql fresh;
    the legacy conversion and back. One line per check; exit 1 if any fails. The
    last line names the PostgreSQL version the checks ran on.

    --pg-bin runs the throwaway server from other binaries: check the migrations on
    the major version of your production server before you upgrade it.

    \b
    Example:
      waha-db verify
      waha-db verify --pg-bin /usr/lib/postgresql/17/bin
      waha-db verify --junit-xml verify.xml
      waha-db --database-url postgresql://postgres@127.0.0.1:5432/waha_ci verify
    """
    url = invocation.url if invocation.given else None
    if url is None:
        pg_bin = find_server_binaries(pg_bin)
    elif click.get_current_context().get_parameter_source("pg_bin") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(
            "--pg-bin chooses the binaries of a throwaway server; with a database URL there is none to start"
        )

    def progress(check: verification.CheckResult) -> None:
        if not as_json:
            for line in check.describe():
                click.echo(line)

    if not as_json:
        click.echo(
            "waha-db verify: " + (f"a throwaway PostgreSQL from {pg_bin}" if url is None else database.display_url(url))
        )
    report = verification.verify(url, progress=progress, pg_bin=pg_bin if url is None else None)
    if junit_xml:
        junit_xml.write_text(report.junit_xml(), encoding="utf-8")
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.summary())
    if not report.passed:
        sys.exit(1)


# --- servers ----------------------------------------------------------------------------------


@main.group()
@pass_invocation
def servers(invocation):
    """Manage the WAHA servers of a user, as the admin (the role of the database URL).

    These commands act as the role of the URL (the database owner or service_role,
    which row security does not restrict), so each names the user explicitly.

    \b
    Example:
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """
    invocation.requires_schema = True


USER = click.option(
    "--user",
    "user_id",
    type=click.UUID,
    required=True,
    metavar="UUID",
    help="The user (auth.users.id) whose servers these are.",
)
SERVER_ID = click.argument("server_id", type=click.UUID, metavar="ID")


class DatabaseInteger(click.ParamType):
    """A whole number that fits the database's integer columns; the columns' own rules (> 0...) are the database's."""

    name = "integer"
    LOWEST, HIGHEST = -(2**31), 2**31 - 1

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if not self.LOWEST <= number <= self.HIGHEST:
            self.fail(f"{number} is out of range: waha_servers stores a whole number up to {self.HIGHEST}", param, ctx)
        return number


DB_INT = DatabaseInteger()


def server_fields(command):
    """The options of `servers add` and `servers update` (update leaves out what is not given)."""
    options = [
        click.option("--name", help="Friendly name, e.g. 'Servidor Principal'."),
        click.option("--url", help="The WAHA server's http(s) URL, without user:password@, ?query or #fragment."),
        click.option("--api-key", help="WAHA's API key."),
        click.option("--description", help="Free text."),
        click.option("--priority", type=DB_INT, help="0 to 10; higher is preferred."),
        click.option("--max-sessions", type=DB_INT, help="Sessions this server may hold (> 0)."),
        click.option("--active/--inactive", default=None, help="Whether new sessions may go to it."),
        click.option("--webhook-url", help="http(s) URL WAHA calls back, without user:password@, ?query or #fragment."),
        click.option("--webhook-secret", help="Secret of the webhook."),
        click.option("--timeout", type=DB_INT, help="Request timeout in seconds (1 to 120)."),
        click.option("--retries", type=DB_INT, help="Retry attempts (0 to 10)."),
        click.option("--rate-limit", type=DB_INT, help="Requests per minute (> 0)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@servers.command("list")
@USER
@click.option("--json", "as_json", is_flag=True, help="Print the servers as JSON (secrets masked).")
@click.option(
    "--all", "every_card", is_flag=True, help=f"Every server's card, even above {fleet_summary.SUMMARY_ABOVE} servers."
)
@pass_invocation
@library_errors
def servers_list(invocation, user_id, as_json, every_card):
    """The user's servers as the seed's "Meus Servidores WAHA" screen, best priority first.

    Green mark: active; red: disabled. Ordered as the seed's listing query
    (ORDER BY prioridade DESC, nome). Once `servers test` or `monitor` got an
    answer from a server, what it reported being (WAHA version, engine, tier, and
    its worker) is shown too, and a WAHA CORE server older than 2026.6.1 (a single
    session) whose max_sessions is above 1 gets a warning with the fix, as do two
    active servers that report one worker. A user with more than 20 servers gets a
    summary instead (counts by state: active, healthy, failing, never checked,
    full; the first failing servers with their reason); --all prints every card.

    \b
    Example:
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --all
    """
    with invocation.transaction() as connection:
        listing = server_admin.server_listing(connection, user_id)
        many = not as_json and not every_card and len(listing.servers) > fleet_summary.SUMMARY_ABOVE
        if many:
            now = connection.execute(sa.text("SELECT pg_catalog.now()")).scalar_one()
            recorded = health.recorded_health(connection, [server.id for server in listing.servers])
    if as_json:
        click.echo(json.dumps(listing.as_json(), indent=2, ensure_ascii=False))
    elif many:
        summary = fleet_summary.summarize(listing.servers, recorded, listing.identities, now)
        click.echo(fleet_summary.render_summary(user_id, summary))
    else:
        click.echo(listing.render())
    workers = {server_id: identity.worker_id for server_id, identity in listing.identities.items()}
    for group in fleet_workers.shared_workers(listing.servers, workers):
        click.echo(f"warning: {group.warning()}", err=as_json)


@servers.command("add")
@USER
@server_fields
@pass_invocation
@library_errors
def servers_add(invocation, user_id, **values):
    """Add a server for the user; options not given take the database's defaults.

    --name and --url are required. Bad values get the database's rule in plain words.

    \b
    Example:
      waha-db servers add --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 \\
          --name 'Servidor Principal' --url https://waha1.example.com \\
          --api-key sua-api-key --priority 10 --max-sessions 50
    """
    missing = [f"--{name}" for name in ("name", "url") if values[name] is None]
    if missing:
        raise click.UsageError(f"missing {' and '.join(missing)}")
    with invocation.transaction() as connection:
        server = server_admin.add_server(connection, user_id, **values)
    click.echo(f"added {server.line()}")


@servers.command("update")
@SERVER_ID
@server_fields
@pass_invocation
@library_errors
def servers_update(invocation, server_id, **values):
    """Change the given fields of server ID; the others stay as they are.

    \b
    Example:
      waha-db servers update 3f0c... --priority 8 --max-sessions 80
    """
    if all(value is None for value in values.values()):
        options = ", ".join(f"--{name.replace('_', '-')}" for name in values)
        raise click.UsageError(f"nothing to update: give at least one of {options}")
    with invocation.transaction() as connection:
        server = server_admin.update_server(connection, server_id, **values)
    click.echo(f"updated {server.line()}")


@servers.command("enable")
@SERVER_ID
@pass_invocation
@library_errors
def servers_enable(invocation, server_id):
    """Let new sessions go to server ID again.

    \b
    Example:
      waha-db servers enable 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with invocation.transaction() as connection:
        server = server_admin.set_active(connection, server_id, True)
    click.echo(f"enabled {server.line()}")


@servers.command("disable")
@SERVER_ID
@pass_invocation
@library_errors
def servers_disable(invocation, server_id):
    """Send no new sessions to server ID (its current sessions stay).

    \b
    Example:
      waha-db servers disable 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with invocation.transaction() as connection:
        server = server_admin.set_active(connection, server_id, False)
    click.echo(f"disabled {server.line()}")


@servers.command("remove")
@SERVER_ID
@YES
@pass_invocation
@library_errors
def servers_remove(invocation, server_id, yes):
    """Delete server ID, after confirmation; refused, with the count, while it still has sessions.

    Without a terminal it refuses unless --yes.

    \b
    Example:
      waha-db servers remove 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
      waha-db servers remove 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f --yes
    """

    def confirm(server: server_admin.Server) -> None:
        click.echo(f"removes {server.line()}")
        _confirm("Remove this server?", yes, "remove it")

    with invocation.transaction() as connection:
        server = server_admin.remove_server(connection, server_id, confirm=confirm)
    click.echo(f"removed {server.nome} ({server.api_url}); id {server.id}")


@servers.command("best")
@USER
@click.option(
    "--exclude",
    "excluded",
    type=click.UUID,
    multiple=True,
    metavar="ID",
    help="A server to leave out (the app's fallback after a failure); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the pick and the reasons as JSON.")
@pass_invocation
@library_errors
def servers_best(invocation, user_id, excluded, as_json):
    """The server get_available_waha_server picks for the user's next session, and why.

    Exit 1 when no server has free capacity.

    \b
    Example:
      waha-db servers best --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      waha-db servers best --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --exclude 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with invocation.transaction() as connection:
        pick = selection.best_server(connection, user_id, list(excluded))
    lines = [json.dumps(pick.as_json(), indent=2, ensure_ascii=False)] if as_json else pick.describe()
    for line in lines:
        click.echo(line)
    if pick.server is None:
        raise click.ClickException(pick.no_server(user_id))


# --- server health: `servers test` and `monitor` (waha_db.fleet) ------------------------------


def round_options(command):
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


@servers.command("test")
@click.argument("server_id", type=click.UUID, required=False, metavar="[ID]")
@click.option(
    "--user",
    "user_id",
    type=click.UUID,
    metavar="UUID",
    help="Test every active server of this user instead of one ID.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON (never the API key).")
@round_options
@pass_invocation
@library_errors
def servers_test(invocation, server_id, user_id, as_json, concurrency, per_host, deadline):
    """The form's [Testar Conexão]: GET {api_url}/api/server/version, and record the outcome.

    Sends X-Api-Key when the server has an api_key, waits at most the server's
    timeout per attempt, retries retry_attempts times with backoff. Prints
    reachable + latency + the WAHA version, or the reason in plain words (name does
    not resolve, connection refused, timed out, TLS error, API key rejected, not a
    WAHA server, server error). A server that answered is then asked, once each and
    at once, GET /health and GET /api/server/status: a 503 shutting_down is recorded
    as drained (ranked after the healthy servers while it cools down, not failed), a
    503 error as failing; where /health is refused (422 on WAHA Core before 2026.6.1)
    or absent, the version's answer decides. The outcome goes through
    report_waha_server_success / report_waha_server_failure, so a failing server
    cools down and get_available_waha_server offers the others first; the version,
    engine, tier and worker id a reachable server reports are recorded too
    (`servers list` shows them), with a warning when a WAHA CORE server older than
    2026.6.1 has max_sessions above 1, and when two active servers of a user report
    one worker. Redirects are not followed and proxy variables are ignored: no
    request goes anywhere but the server's URL (its path, with the endpoint
    appended; never its query). Every server is asked at once, within --deadline.
    Exit 1 when any server is unreachable or unhealthy (not when drained).

    \b
    Probes connect only where the network policy allows: never to link-local,
    unspecified, multicast or broadcast addresses; WAHA_DB_PROBE_DENY=private,loopback
    (or public) denies more. SSL_CERT_FILE / SSL_CERT_DIR add a CA to trust.

    \b
    Example:
      waha-db servers test 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
      waha-db servers test --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --json
    """
    if (server_id is None) == (user_id is None):
        raise click.UsageError("give either a server ID or --user UUID (all of that user's active servers)")
    options = health.round_options(concurrency=concurrency, per_host=per_host, deadline=deadline)
    with invocation.engine() as engine, health.autocommit_connection(engine) as connection:
        targets = health.load_servers(connection, server_ids=[server_id] if server_id else (), user_id=user_id)
        progress = terminal_progress(sys.stderr, quiet=as_json)
        checked = health.test_servers(connection, targets, options=options, progress=progress)
        shared = fleet_workers.shared_worker_warnings(connection, [item.server.user_id for item in checked])
    if as_json:
        click.echo(json.dumps([health.checked_as_json(item) for item in checked], indent=2, ensure_ascii=False))
    else:
        if not checked:
            click.echo(f"user {user_id} has no active servers")
        for item in checked:
            for line in health.describe_checked(item):
                click.echo(line)
    for warning in shared:
        click.echo(f"warning: {warning}", err=as_json)
    unreachable = [item.server.nome for item in checked if not item.probe.reachable]
    unhealthy = [item.server.nome for item in checked if item.probe.unhealthy]
    if unreachable or unhealthy:
        failing = [
            f"{len(names)} of {len(checked)} servers {state}: {', '.join(names)}"
            for state, names in (("unreachable", unreachable), ("unhealthy", unhealthy))
            if names
        ]
        raise click.ClickException("; ".join(failing))


@main.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="Seconds from the start of one round of checks to the next.",
)
@click.option("--once", is_flag=True, help="One round of checks, then exit (for cron).")
@round_options
@pass_invocation
@library_errors
def monitor(invocation, interval, once, concurrency, per_host, deadline):
    """Check every active server of every user on a schedule, and record the outcomes.

    Runs as the role of the database URL, which must see every server (the owner or
    service_role). Prints one line per state change (healthy -> failing, failing ->
    healthy, drained when WAHA's /health says it is shutting down), when a server
    reports another WAHA version, engine, tier or worker than recorded (with a
    warning for a CORE server older than 2026.6.1 whose max_sessions is above 1, and
    for two active servers of a user that report one worker), and
    when the database connection is lost or back; it reconnects with
    backoff and never stops because one server fails. Each round asks every server
    at once and ends within --deadline, whatever the servers' timeouts; then one
    line sums it up (servers probed, healthy, failing, round time) and the outcomes
    are recorded in a few statements. SIGTERM or Ctrl-C stops it within about a
    second: the checks in flight are cancelled and not recorded. With --once, exit
    1 when the database cannot be reached.

    \b
    Probes connect only where the network policy allows: never to link-local,
    unspecified, multicast or broadcast addresses; WAHA_DB_PROBE_DENY=private,loopback
    (or public) denies more. SSL_CERT_FILE / SSL_CERT_DIR add a CA to trust.

    \b
    Example:
      waha-db monitor --interval 30
      waha-db monitor --once
    """
    invocation.requires_schema = True
    options = health.round_options(concurrency=concurrency, per_host=per_host, deadline=deadline)
    stop = threading.Event()
    restore = fleet_monitor.stop_on_signals(stop)
    try:
        with invocation.engine() as engine:
            click.echo(
                f"monitoring the active WAHA servers of every user at {database.connection_target(invocation.url)}"
                + (" (one round)" if once else f", every {interval:g} s; SIGTERM or Ctrl-C stops")
                + f"; {options.policy.describe()}",
                err=True,
            )
            progress = terminal_progress(sys.stderr)

            def on_round(summary: fleet_monitor.RoundSummary) -> None:
                if progress is not None:
                    progress.clear()
                click.echo(summary.line())

            stats = fleet_monitor.monitor(
                engine,
                interval=interval,
                once=once,
                options=options,
                stop=stop,
                emit=click.echo,
                on_round=on_round,
                progress=progress,
            )
    finally:
        restore()
    click.echo(
        f"stopped after {stats.cycles} round(s), {stats.probes} check(s), {stats.state_changes} state change(s)",
        err=True,
    )


# --- sessions: capacity accounting (waha_db.fleet.allocation), and the benchmark (waha_db.checks.bench) ---


@main.group()
@pass_invocation
def sessions(invocation) -> None:
    """WhatsApp sessions: the capacity counters of the servers (sessions_ativas), and the truth of the servers.

    \b
    Example:
      waha-db sessions reconcile            # report counters that differ from the sessions
      waha-db sessions reconcile --apply
      waha-db sessions reconcile --live     # report rows that differ from what the WAHA servers run
    """
    invocation.requires_schema = True


@sessions.command()
@click.option(
    "--live",
    "against_waha",
    is_flag=True,
    help="Compare the sessions with what each WAHA server runs (GET /api/sessions), not only the counters with the rows.",
)
@click.option(
    "--user", "user_id", type=click.UUID, metavar="UUID", help="With --live: only this user's active servers."
)
@click.option("--apply", is_flag=True, help="Correct what the rules allow (see above), after confirmation.")
@click.option(
    "--server",
    "servers",
    multiple=True,
    type=click.UUID,
    metavar="ID",
    help="Without --live: also correct this server's counter when it is above its sessions. "
    "With --live: reconcile this server (active or not) instead of every active one. Repeatable.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help=f"With --live: leave alone rows written this recently (default {live.DEFAULT_GRACE_SECONDS:g}): "
    "the app may still be creating the session on WAHA.",
)
@click.option(
    "--silent-after",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MINUTES",
    help=f"With --live: report a WORKING session whose last activity is older than this "
    f"(default {live.DEFAULT_SILENT_AFTER.total_seconds() / 60:g}; WAHA 2026 sends it).",
)
@YES
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@round_options
@pass_invocation
@library_errors
def reconcile(
    invocation,
    against_waha,
    user_id,
    apply,
    servers,
    grace,
    silent_after,
    yes,
    as_json,
    concurrency,
    per_host,
    deadline,
):
    """Compare each server's sessions_ativas with its occupying sessions, and correct them.

    A session occupies a slot unless its status is STOPPED, FAILED or DISCONNECTED
    (any case). Every difference is reported. With --apply, counters BELOW their
    sessions are corrected (they let allocation overfill the server); counters ABOVE
    may count sessions that live outside waha_sessions, so they are corrected only
    for the servers named with --server.

    With --live, each active server (or each --server, or the --user's) is asked
    what it runs, and the report lists, per server: sessions WAHA has that the
    database does not know, rows counted as occupying that WAHA does not have or
    reports STOPPED/FAILED, other status differences, phone number and profile
    name differences, sessions another WAHA worker runs (other_worker), WORKING
    sessions silent for more than --silent-after minutes (silent, from WAHA 2026's
    timestamps.activity), and the counter WAHA's truth implies. --apply then inserts
    the unknown sessions for the server's user, marks the missing ones STOPPED
    (never deletes a row), writes WAHA's statuses, phone numbers and profile
    names, and sets the counter, in one transaction per server, safe against
    concurrent allocate_waha_session / release_waha_session; it leaves other
    workers' and silent sessions alone. Nothing is ever changed on a WAHA server.
    A server that cannot be read (within --deadline: every server is asked at
    once) is reported and skipped (exit 1), never taken as "no sessions". A server
    whose URL more than one user registered is reported as "registered by N users"
    and skipped: one WAHA, one tenant; so is a server that reports the WAHA worker
    another server of its user reports. --concurrency, --per-host and --deadline go
    with --live; so do WAHA_DB_PROBE_DENY and SSL_CERT_FILE / SSL_CERT_DIR, as for
    `monitor`.

    \b
    Example:
      waha-db sessions reconcile
      waha-db sessions reconcile --apply --yes
      waha-db sessions reconcile --apply --server 3f0c2a9e-1b4d-4c8e-9f7a-0d1e2f3a4b5c
      waha-db sessions reconcile --live
      waha-db sessions reconcile --live --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --apply --yes --json
    """
    if against_waha:
        options = health.round_options(concurrency=concurrency, per_host=per_host, deadline=deadline)
        return _reconcile_live(invocation, user_id, servers, apply, grace, silent_after, yes, as_json, options)
    if user_id is not None or grace is not None or silent_after is not None:
        raise click.UsageError("--user, --grace and --silent-after go with --live")

    def confirm(report: allocation.ReconcileReport) -> None:
        if not as_json:
            click.echo(allocation.render_report(report))
        _confirm("Correct these counters?", yes, "correct them")

    with invocation.engine() as engine:
        report = allocation.reconcile_counters(engine, apply=apply, servers=servers, confirm=confirm)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else allocation.render_report(report))


@main.command()
@click.option(
    "--database-url",
    "bench_url",
    metavar="URL",
    help="Run on this database instead of a throwaway PostgreSQL: refused unless empty (nothing in schema public, "
    "as verify wants it), filled, then emptied again. DATABASE_URL is never used by bench.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="SERVERS",
    help="Servers in the table the selection is measured on (repeatable)  [default: 10000 and 1000000]",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=10,
    show_default=True,
    help="Duration of each selection measure, split into --windows windows.",
)
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Windows per selection measure; calls/s is their median.",
)
@click.option(
    "--fleet",
    is_flag=True,
    help="Measure the fleet commands instead: monitor --once and sessions reconcile --live over fake WAHA servers.",
)
@click.option(
    "--servers",
    "fleet_sizes",
    multiple=True,
    type=click.IntRange(min=1, max=5000),
    metavar="N",
    help="With --fleet: fake WAHA servers on 127.0.0.1 (repeatable)  [default: 1000]",
)
@click.option(
    "--toolkit",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With --fleet: measure the waha_db package in this folder (another checkout's toolkit/), to compare.",
)
@click.option(
    "--concurrency",
    "fleet_concurrency",
    type=click.IntRange(min=1),
    help="With --fleet: run both commands with this --concurrency (default: theirs).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
@library_errors
def bench(ctx, bench_url, tables, seconds, windows, fleet, fleet_sizes, toolkit, fleet_concurrency, as_json):
    """Measure server selection and session allocation; print the figures and the goals.

    On a throwaway PostgreSQL (the server binaries and pgbench must be installed),
    on tables of 10,000 and 1,000,000 servers: get_available_waha_server against
    its own query (the user a parameter of both) and SELECT 1, for users with 5,
    100 and 1,000 servers; then allocate_waha_session against the seed's
    three-statement flow with 8 and 32 clients, on one user and on 100 users.
    Takes about three minutes. Exit 1 when a goal is missed.

    With --fleet: N fake WAHA servers on 127.0.0.1 (10% accept and never answer, 5%
    refuse, the rest answer with a few sessions each; timeout 2 s, 2 retries), and
    `monitor --once` and `sessions reconcile --live` each run once over them, on a
    throwaway PostgreSQL: time against the ideal (the largest single server's
    budget), SQL statements sent, peak memory. About a minute for 1,000 servers.

    \b
    Example:
      waha-db bench
      waha-db bench --table 10000 --seconds 10
      waha-db bench --json > bench.json
      waha-db bench --fleet --servers 200 --servers 1000
    """
    if fleet:
        not_for_fleet = [
            flag
            for flag, name in (
                ("--database-url", "bench_url"),
                ("--table", "tables"),
                ("--seconds", "seconds"),
                ("--windows", "windows"),
            )
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if not_for_fleet:
            raise click.UsageError(
                f"{', '.join(not_for_fleet)} go without --fleet, which runs on its own throwaway PostgreSQL"
            )
        result = fleet_benchmark.run_fleet_benchmark(
            sizes=tuple(fleet_sizes) or (fleet_benchmark.SERVERS,),
            toolkit=toolkit,
            concurrency=fleet_concurrency,
            progress=lambda message: click.echo(f"  {message}", err=True),
        )
        click.echo(json.dumps(result.as_dict(), indent=2) if as_json else fleet_benchmark.render(result))
        return
    if fleet_sizes or toolkit or fleet_concurrency:
        raise click.UsageError("--servers, --toolkit and --concurrency go with --fleet")
    invocation = ctx.find_object(Invocation)
    if bench_url is not None:
        invocation = ctx.obj = Invocation(bench_url)
    elif ctx.parent.get_parameter_source("database_url") != click.core.ParameterSource.COMMANDLINE:
        invocation = None  # DATABASE_URL of the environment is never bench's: it fills the database
    url = invocation.url if invocation is not None else None
    result = benchmark.run_benchmark(
        url,
        table_servers=tables or benchmark.TABLE_SERVERS,
        seconds=seconds,
        windows=windows,
        progress=lambda message: click.echo(f"  {message}", err=True),
    )
    click.echo(json.dumps(result.as_dict(), indent=2, default=str) if as_json else benchmark.render(result))
    missed = [goal.name for goal in result.goals if not goal.met]
    if missed:
        raise click.ClickException(f"{len(missed)} goal(s) missed: {'; '.join(missed)}")


# --- export for other tools ------------------------------------------------------------------------


@main.group()
def export() -> None:
    """Write the migrations in the form another tool applies them.

    \b
    Example:
      waha-db export supabase --workdir .
    """


@export.command("supabase")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The folder that holds supabase/ (as the Supabase CLI's --workdir).",
)
@click.option(
    "--owner",
    type=OWNER,
    metavar="UUID",
    help="Write the owner of the server converted from a legacy waha_config into the files that need it.",
)
@library_errors
def export_supabase(workdir, owner):
    """Write one Supabase CLI migration per revision, and pgTAP tests, into WORKDIR/supabase.

    supabase/migrations/<version>_waha_<revision>_<what>.sql: each revision as
    `waha-db upgrade` applies it, for `supabase db push`. A file skips itself on a
    database where waha-db already applied its revision, and records what it applies
    in alembic_version, so waha-db and the Supabase CLI can take turns. Versions are
    fixed per revision: every export writes the same files, and a later release only
    adds some. supabase/tests/waha_*.sql: pgTAP tests of the schema, for
    `supabase test db` or pg_prove.

    The app's own files are left alone. A waha file that differs from what this
    release writes is reported, and then nothing is written (exit 1).

    A legacy waha_config with a server to convert needs its owner: give --owner, or
    push with ?options=-c%20waha.config_owner%3DUUID in the --db-url; without one the
    push stops before applying anything.

    \b
    Example:
      waha-db export supabase                           # into ./supabase
      waha-db export supabase --workdir app --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      supabase db push --db-url "$DATABASE_URL"
    """
    report = exporting.export_supabase(workdir, owner=owner)
    click.echo(exporting.render_report(report))
    if not report.ok:
        raise click.ClickException(
            "a waha file differs from what this waha-db writes, so nothing was written: export as before "
            "(the same --owner), or put the file back as exported (remove it if it was never pushed), then export again"
        )


# --- sessions reconcile --live: the database against what the WAHA servers run (waha_db.fleet.live) ---


def _reconcile_live(invocation, user_id, server_ids, apply, grace, silent_after, yes, as_json, options):
    """The --live half of `sessions reconcile`: report, ask, apply, print; exit 1 when a server was not reconciled."""

    def confirm(report: live.LiveReport) -> None:
        if not as_json:
            click.echo(live_report.render_live_report(report))
        _confirm("Bring the database in line with the WAHA servers?", yes, "apply")

    with invocation.engine() as engine:
        report = live.reconcile_fleet(
            engine,
            user_id=user_id,
            server_ids=server_ids,
            apply=apply,
            grace=live.DEFAULT_GRACE_SECONDS if grace is None else grace,
            silent_after=live.DEFAULT_SILENT_AFTER if silent_after is None else dt.timedelta(minutes=silent_after),
            confirm=None if yes else confirm,
            options=options,
            progress=terminal_progress(sys.stderr, quiet=as_json),
        )
    click.echo(
        json.dumps(report.as_json(), indent=2, ensure_ascii=False)
        if as_json
        else live_report.render_live_report(report)
    )
    if report.problems:
        raise click.ClickException(report.problems_line())
