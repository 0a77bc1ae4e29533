"""`waha-db`: the command line of the toolkit, for DBAs and CI.

A thin layer: each command parses its options, calls one library function of
toolkit/, and prints the result. Library errors become `click.ClickException` here,
at the edge, and only here (see `library_errors`): the user sees one message, exit
status 1, never a traceback and never a password.

To add a command: write the library function first, then a function here decorated
with `@main.command()` (or `@servers.command()` for a subcommand of `servers`) and
`@library_errors`, whose docstring is its --help text and ends with an `Example:` block.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import click
import psycopg
import sqlalchemy as sa
from alembic.util import CommandError

from waha_db.lifecycle import adopt as adoption
from waha_db.fleet import allocation
from waha_db.checks import bench as benchmark
from waha_db import database
from waha_db.lifecycle import catalog
from waha_db.fleet import health as server_health, monitor as fleet_monitor, probe, selection
from waha_db.lifecycle import migrate
from waha_db.lifecycle import plan as plans
from waha_db.fleet import servers as server_admin
from waha_db.lifecycle import state
from waha_db.checks import verify as verification
from waha_db.checks.pgtemp import PostgresNotFound

EXAMPLE_OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"

# Errors of the library that carry a message written for the user.
USER_ERRORS = (
    database.DatabaseUrlError,
    database.ConnectionFailure,
    server_admin.ServerError,
    verification.VerifyRefused,
    CommandError,  # alembic's, e.g. an unknown revision for --sql; migrate.MigrationError is one
    PostgresNotFound,
    server_health.HealthError,
    fleet_monitor.MonitorError,
    allocation.ReconcileError,
    benchmark.BenchError,
)


class Refused(click.ClickException):
    """The command will not do what was asked (no confirmation, a problem in the plan)."""


def library_errors(command):
    """Turn the library's errors into one-line ClickExceptions (exit 1), passwords masked.

    Database errors come through SQLAlchemy (most commands) or straight from psycopg
    (bench, whose clients are plain psycopg connections); both read the same: a server
    that cannot be reached is `describe_connection_failure`'s one line, any other
    error is what the database refused, with its detail and hint.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except USER_ERRORS as error:
            raise click.ClickException(database.mask_password(str(error))) from None
        except (sa.exc.OperationalError, psycopg.OperationalError) as error:
            url = click.get_current_context().obj.get("url")
            if url is not None and _is_connection_failure(error):
                raise click.ClickException(database.describe_connection_failure(url, error)) from None
            raise click.ClickException(_database_error(error)) from None
        except (sa.exc.DBAPIError, psycopg.Error) as error:
            raise click.ClickException(_database_error(error)) from None

    return wrapper


def _is_connection_failure(error: sa.exc.OperationalError | psycopg.OperationalError) -> bool:
    """Whether the server could not be reached or refused us, rather than refusing a statement."""
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    return "connection" in str(error).split(":")[0].lower() or "resolve" in str(error)


def _database_error(error: sa.exc.DBAPIError | psycopg.Error) -> str:
    original = getattr(error, "orig", None) or error
    diagnostic = getattr(original, "diag", None)
    lines = [f"the database refused: {getattr(diagnostic, 'message_primary', None) or str(original).splitlines()[0]}"]
    for label, text in (("detail", getattr(diagnostic, "message_detail", None)), ("hint", getattr(diagnostic, "message_hint", None))):
        if text:
            lines.append(f"{label}: {text}")
    return database.mask_password("\n".join(lines))


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
    ctx.ensure_object(dict)
    ctx.obj["database_url"] = database_url


def _url(ctx: click.Context) -> sa.URL:
    url = database.parse_url(database.resolve_url(ctx.obj.get("database_url")))
    ctx.obj["url"] = url
    return url


@contextmanager
def _engine(ctx: click.Context):
    """An engine on the command's database whose connection has been proven (one clear line otherwise)."""
    engine = database.connect_engine(_url(ctx))
    try:
        yield engine
    finally:
        engine.dispose()


def _can_ask() -> bool:
    """Whether a person can answer a confirmation: stdin is a terminal."""
    return sys.stdin.isatty()


def _confirm(question: str, yes: bool, action: str) -> None:
    if yes:
        return
    if not _can_ask():
        raise Refused(f"not confirmed: there is no terminal to ask on, so nothing was done; pass --yes to {action} without asking")
    if not click.confirm(question, default=False):
        raise Refused("not confirmed: nothing was done")


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"  notice: {database.mask_password(record.getMessage())}", err=True)


@contextmanager
def _server_notices():
    """Show what the migrations report as they run (roles created, legacy row converted...)."""
    logger = logging.getLogger("alembic.env")
    handler = _EchoHandler()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _print_steps(plan: plans.Plan) -> None:
    for step in plan.steps:
        click.echo(f"  {step.revision}  {step.title}")


# --- migrations ------------------------------------------------------------------------------


@main.command()
@click.argument("revision", default="head")
@click.option("--owner", metavar="UUID", help="The user who will own the WAHA server converted from the legacy waha_config.")
@click.option("--sql", "offline", is_flag=True, help="Print the SQL script instead of running it (no database needed).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--lock-timeout", type=click.FloatRange(min=0, min_open=True), default=migrate.DEFAULT_LOCK_TIMEOUT_SECONDS,
              show_default=True, metavar="SECONDS", help="Give up on a table lock after this long, rather than block the app.")
@click.pass_context
@library_errors
def upgrade(ctx, revision, owner, offline, yes, lock_timeout):
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
        click.echo(migrate.offline_sql(revision, owner=migrate.parse_owner(owner)), nl=False)
        return
    with _engine(ctx) as engine:
        with engine.connect() as connection:
            plan = plans.plan_upgrade(connection, revision, owner)
        click.echo(f"database: {database.display_url(ctx.obj['url'])}")
        click.echo(f"current revision: {plan.current or 'none (no alembic_version)'}")
        if plan.problems:
            raise Refused("cannot upgrade: " + "; ".join(plan.problems) + ". Nothing was changed.")
        if plan.nothing_to_do:
            click.echo(f"nothing to do: the database is at {plan.current}")
            return
        click.echo(f"revisions to apply ({len(plan.steps)}):")
        _print_steps(plan)
        if plan.legacy:
            click.echo(
                f"legacy waha_config: {len(plan.legacy.api_urls)} server(s) ({', '.join(plan.legacy.api_urls)}) will become "
                f"'Servidor Padrão' of user {plan.legacy.owner}, priority 10, 50 sessions"
            )
        elif any(step.revision == plans.CONVERSION_REVISION for step in plan.steps):
            click.echo("legacy waha_config: no server to convert")
        _confirm(f"Upgrade to {plan.target}?", yes, "upgrade")
        started = time.perf_counter()
        with _server_notices():
            migrate.upgrade(engine, revision, owner=owner, lock_timeout=lock_timeout)
        click.echo(f"upgraded to {plan.target} in {time.perf_counter() - started:.2f}s")


@main.command()
@click.argument("revision")
@click.option("--sql", "offline", is_flag=True, help="Print the SQL script instead of running it (needs no database).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--lock-timeout", type=click.FloatRange(min=0, min_open=True), default=migrate.DEFAULT_LOCK_TIMEOUT_SECONDS,
              show_default=True, metavar="SECONDS", help="Give up on a table lock after this long, rather than block the app.")
@click.pass_context
@library_errors
def downgrade(ctx, revision, offline, yes, lock_timeout):
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
        click.echo(migrate.offline_sql(revision, start=migrate.head_revision(), downgrade_to=True), nl=False)
        return
    with _engine(ctx) as engine:
        with engine.connect() as connection:
            plan = plans.plan_downgrade(connection, revision)
        click.echo(f"database: {database.display_url(ctx.obj['url'])}")
        click.echo(f"current revision: {plan.current or 'none (no alembic_version)'}")
        if plan.problems:
            raise Refused("cannot downgrade: " + "; ".join(plan.problems))
        if plan.nothing_to_do:
            click.echo(f"nothing to do: the database is at {plan.current}")
            return
        click.echo(f"revisions to undo ({len(plan.steps)}):")
        _print_steps(plan)
        click.echo("data removed:")
        for line in plan.removes:
            click.echo(f"  {line}")
        _confirm(f"Downgrade to {plan.target or 'base'}?", yes, "downgrade")
        started = time.perf_counter()
        with _server_notices():
            migrate.downgrade(engine, revision, lock_timeout=lock_timeout)
        click.echo(f"downgraded to {plan.target or 'base'} in {time.perf_counter() - started:.2f}s")


@main.command()
@click.pass_context
@library_errors
def history(ctx):
    """The revisions, oldest first, one line each; the database's current one is marked when a database is given.

    \b
    Example:
      waha-db history
      waha-db --database-url postgresql://postgres@127.0.0.1/app history
    """
    current = None
    if ctx.obj.get("database_url") is not None:
        with _engine(ctx) as engine, engine.connect() as connection:
            current = plans.current_revision(connection)
    script = migrate.script_directory()
    head = migrate.head_revision()
    for revision in reversed(list(script.walk_revisions())):
        marks = [mark for mark, on in (("current", revision.revision == current), ("head", revision.revision == head)) if on]
        title = (revision.doc or "").strip().splitlines()[0].rstrip(".")
        click.echo(f"{'*' if revision.revision == current else ' '} {revision.revision}  {title}" + (f"  ({', '.join(marks)})" if marks else ""))
    if ctx.obj.get("database_url") is not None and current is None:
        click.echo("(no revision recorded in this database)")


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it (default: sql/schema.sql of the repository checkout); '-' for stdout.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the file differs from what the migrations generate.")
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
        raise click.UsageError("waha-db runs from an installed package, not a repository checkout: "
                               "give --output FILE (or '-' for stdout)")
    text = migrate.full_schema_sql()
    if check:
        if str(path) == "-":
            raise click.UsageError("--check needs a file, not '-'")
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            raise click.ClickException(f"{path} is stale (or missing): regenerate it with `waha-db sql`")
        click.echo(f"{path} is up to date (revision {migrate.head_revision()})")
        return
    if str(path) == "-":
        click.echo(text, nl=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path} (revision {migrate.head_revision()})")


# --- state of a database ------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option("--check", is_flag=True, help="Exit 1 unless the database is at head with no drift (for deploy scripts).")
@click.pass_context
@library_errors
def status(ctx, as_json, check):
    """What state the database is in, and what to do next.

    empty; legacy V1 (with or without a server to convert); V2.1 made by hand
    (adoptable or not, and why); managed at revision X with N revisions pending; at
    head; or drifted from head, with what differs (a missing index, a changed
    column, a missing policy...).

    \b
    Example:
      waha-db status
      waha-db status --check && echo "at head, no drift"
      waha-db status --json | jq .state
    """
    with _engine(ctx) as engine, engine.connect() as connection:
        report = database_status(connection)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"database: {database.display_url(ctx.obj['url'])}")
        click.echo(f"state: {report['summary']}")
        for line in report["details"]:
            click.echo(f"  {line}")
        if report["next"]:
            click.echo(f"next: {report['next']}")
    if check and not report["at_head"]:
        raise click.ClickException(f"not at head without drift: {report['summary']}")


NEXT_STEP = {
    state.EMPTY: "waha-db upgrade",
    state.LEGACY: "waha-db upgrade --owner UUID",
    state.HAND_MADE: "waha-db adopt",
    state.MANAGED: "waha-db upgrade",
    state.UNKNOWN_REVISION: "use the waha-db release that made this revision",
}


def database_status(connection: sa.Connection) -> dict:
    """waha_db.lifecycle.state's classification, plus drift from head (a database at head whose objects differ)."""
    found = state.database_state(connection)
    report = {
        "state": found.kind,
        "summary": found.summary,
        "current": found.revision,
        "head": migrate.head_revision(),
        "pending": list(found.pending),
        "details": list(found.adoption_problems),
        "drift": [],
        "next": "" if found.at_head else NEXT_STEP[found.kind],
    }
    if found.kind == state.LEGACY:
        urls = plans.legacy_api_urls(connection)
        report["details"] = [f"to convert: {url}" for url in urls]
        report["next"] = "waha-db upgrade --owner UUID" if urls else "waha-db upgrade"
    if found.kind == state.HAND_MADE and found.adoption_problems:
        report["next"] = "correct the problems above, then `waha-db adopt`"
    if found.at_head:
        report["drift"] = catalog.detect_drift(connection)
        if report["drift"]:
            report["state"] = "drifted"
            report["summary"] = f"at head ({found.revision}) but drifted from it: {len(report['drift'])} differences"
            report["details"] = report["drift"]
            report["next"] = ("find who changed the WAHA objects by hand and put them back as head has them "
                              "(toolkit/lifecycle/head_catalog.json shows head's definitions)")
    report["at_head"] = found.at_head and not report["drift"]
    return report


@main.command()
@click.option("--owner", metavar="UUID", help="The user who owns the server of a legacy waha_config left beside the tables.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--lock-timeout", type=click.FloatRange(min=0, min_open=True), default=migrate.DEFAULT_LOCK_TIMEOUT_SECONDS,
              show_default=True, metavar="SECONDS", help="Give up on a table lock after this long, rather than block the app.")
@click.pass_context
@library_errors
def adopt(ctx, owner, yes, lock_timeout):
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
    with _engine(ctx) as engine:
        with engine.connect() as connection:
            plan = adoption.plan_adoption(connection, owner)
        click.echo(f"database: {database.display_url(ctx.obj['url'])}")
        if plan.problems:
            click.echo("cannot adopt:")
            for problem in plan.problems:
                click.echo(f"  - {problem}")
            raise Refused(f"{len(plan.problems)} problem(s) block the adoption; nothing was changed")
        click.echo("adoption plan:")
        for action in plan.actions:
            click.echo(f"  + {action}")
        _confirm("Adopt this database?", yes, "adopt")
        with _server_notices(), engine.connect() as connection:
            adoption.adopt(connection, owner, lock_timeout=lock_timeout)
        click.echo(f"adopted: the database is managed by waha-db, at {migrate.head_revision()}")


# --- CI -------------------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of one line per check.")
@click.option("--junit-xml", type=click.Path(dir_okay=False, writable=True, path_type=Path), metavar="FILE",
              help="Also write the report as JUnit XML (for CI test reports).")
@click.pass_context
@library_errors
def verify(ctx, as_json, junit_xml):
    """Check that the migrations are sound: the CI command.

    Without a database URL it starts a throwaway PostgreSQL and checks on two fresh
    databases, plain and Supabase-like. With one it refuses a database that is not
    empty, runs there, and leaves it empty. Checks: one head; upgrade to head;
    metadata equals the migrated database; no drift from the recorded head catalog;
    security rules; the seed's examples and the selection rules; every revision
    up/down/up; downgrade to base; offline SQL equals online; sql/schema.sql fresh;
    the legacy conversion and back. One line per check; exit 1 if any fails.

    \b
    Example:
      waha-db verify
      waha-db verify --junit-xml verify.xml
      waha-db --database-url postgresql://postgres@127.0.0.1:5432/waha_ci verify
    """
    url = ctx.obj.get("database_url")
    if url is not None:
        ctx.obj["url"] = database.parse_url(url)

    def progress(check: verification.CheckResult) -> None:
        if as_json:
            return
        click.echo(f"{'PASS' if check.passed else 'FAIL'}  {check.name}{f' ({check.summary})' if check.passed and check.summary else ''}  {check.seconds:.2f}s")
        if not check.passed:
            click.echo(f"      {check.summary}")
        for line in check.details:
            click.echo(f"      - {line}")

    if not as_json:
        click.echo("waha-db verify: " + ("a throwaway PostgreSQL" if url is None else database.display_url(ctx.obj["url"])))
    report = verification.verify(url, progress=progress)
    if junit_xml:
        junit_xml.write_text(report.junit_xml(), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        failed = sum(not check.passed for check in report.checks)
        click.echo(f"{len(report.checks)} checks on {report.target}: {len(report.checks) - failed} passed, {failed} failed in {report.seconds:.1f}s")
    if not report.passed:
        sys.exit(1)


# --- servers ----------------------------------------------------------------------------------


@main.group()
def servers():
    """Manage the WAHA servers of a user, as the admin (the role of the database URL).

    These commands act as the role of the URL (the database owner or service_role,
    which row security does not restrict), so each names the user explicitly.

    \b
    Example:
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """


USER = click.option("--user", "user_id", type=click.UUID, required=True, metavar="UUID", help="The user (auth.users.id) whose servers these are.")


def server_fields(command):
    """The options of `servers add` and `servers update` (update leaves out what is not given)."""
    options = [
        click.option("--name", help="Friendly name, e.g. 'Servidor Principal'."),
        click.option("--url", help="The WAHA server's http(s) URL."),
        click.option("--api-key", help="WAHA's API key."),
        click.option("--description", help="Free text."),
        click.option("--priority", type=int, help="0 to 10; higher is preferred."),
        click.option("--max-sessions", type=int, help="Sessions this server may hold (> 0)."),
        click.option("--active/--inactive", default=None, help="Whether new sessions may go to it."),
        click.option("--webhook-url", help="http(s) URL WAHA calls back."),
        click.option("--webhook-secret", help="Secret of the webhook."),
        click.option("--timeout", type=int, help="Request timeout in seconds (> 0)."),
        click.option("--retries", type=int, help="Retry attempts (>= 0)."),
        click.option("--rate-limit", type=int, help="Requests per minute (> 0)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextmanager
def _transaction(ctx):
    with _engine(ctx) as engine, engine.begin() as connection:
        yield connection


def _server_line(server: server_admin.Server) -> str:
    state = f"active, {server.sessions_ativas}/{server.max_sessions} sessions" if server.ativo else "disabled"
    return f"{server.nome} ({server.api_url}), priority {server.prioridade}, {state}; id {server.id}"


@servers.command("list")
@USER
@click.option("--json", "as_json", is_flag=True, help="Print the servers as JSON (secrets masked).")
@click.pass_context
@library_errors
def servers_list(ctx, user_id, as_json):
    """The user's servers as the seed's "Meus Servidores WAHA" screen, best priority first.

    Green mark: active; red: disabled. Ordered as the seed's listing query
    (ORDER BY prioridade DESC, nome).

    \b
    Example:
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """
    with _transaction(ctx) as connection:
        found = server_admin.list_servers(connection, user_id)
    if as_json:
        click.echo(json.dumps([server.as_json() for server in found], indent=2, ensure_ascii=False))
    else:
        click.echo(server_admin.render_server_list(found))


@servers.command("add")
@USER
@server_fields
@click.pass_context
@library_errors
def servers_add(ctx, user_id, **values):
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
    with _transaction(ctx) as connection:
        server = server_admin.add_server(connection, user_id, **values)
    click.echo(f"added {_server_line(server)}")


@servers.command("update")
@click.argument("server_id", type=click.UUID, metavar="ID")
@server_fields
@click.pass_context
@library_errors
def servers_update(ctx, server_id, **values):
    """Change the given fields of server ID; the others stay as they are.

    \b
    Example:
      waha-db servers update 3f0c... --priority 8 --max-sessions 80
    """
    with _transaction(ctx) as connection:
        server = server_admin.update_server(connection, server_id, **values)
    click.echo(f"updated {_server_line(server)}")


@servers.command("enable")
@click.argument("server_id", type=click.UUID, metavar="ID")
@click.pass_context
@library_errors
def servers_enable(ctx, server_id):
    """Let new sessions go to server ID again.

    \b
    Example:
      waha-db servers enable 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with _transaction(ctx) as connection:
        server = server_admin.set_active(connection, server_id, True)
    click.echo(f"enabled {_server_line(server)}")


@servers.command("disable")
@click.argument("server_id", type=click.UUID, metavar="ID")
@click.pass_context
@library_errors
def servers_disable(ctx, server_id):
    """Send no new sessions to server ID (its current sessions stay).

    \b
    Example:
      waha-db servers disable 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with _transaction(ctx) as connection:
        server = server_admin.set_active(connection, server_id, False)
    click.echo(f"disabled {_server_line(server)}")


@servers.command("remove")
@click.argument("server_id", type=click.UUID, metavar="ID")
@click.pass_context
@library_errors
def servers_remove(ctx, server_id):
    """Delete server ID; refused, with the count, while it still has sessions.

    \b
    Example:
      waha-db servers remove 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with _transaction(ctx) as connection:
        server = server_admin.remove_server(connection, server_id)
    click.echo(f"removed {server.nome} ({server.api_url}); id {server.id}")


@servers.command("best")
@USER
@click.option("--exclude", "excluded", type=click.UUID, multiple=True, metavar="ID", help="A server to leave out (the app's fallback after a failure); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the pick and the reasons as JSON.")
@click.pass_context
@library_errors
def servers_best(ctx, user_id, excluded, as_json):
    """The server get_available_waha_server picks for the user's next session, and why.

    Exit 1 when no server has free capacity.

    \b
    Example:
      waha-db servers best --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      waha-db servers best --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --exclude 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with _transaction(ctx) as connection:
        pick = selection.best_server(connection, user_id, list(excluded))
    if as_json:
        click.echo(json.dumps({
            "server": pick.server.as_json() if pick.server else None,
            "reasons": pick.reasons,
            "not_candidates": pick.not_candidates,
        }, indent=2, ensure_ascii=False))
    elif pick.server:
        click.echo(f"best: {_server_line(pick.server)}")
        for reason in pick.reasons:
            click.echo(f"  - {reason}")
    if pick.server is None:
        reasons = f" ({'; '.join(pick.not_candidates)})" if pick.not_candidates else " (the user has no servers)"
        raise click.ClickException(f"no server of user {user_id} has free capacity{reasons}")
    if not as_json:
        for line in pick.not_candidates:
            click.echo(f"  not a candidate: {line}")


# --- server health: `servers test` and `monitor` (toolkit/fleet/health.py) ---------------------------


@servers.command("test")
@click.argument("server_id", type=click.UUID, required=False, metavar="[ID]")
@click.option("--user", "user_id", type=click.UUID, metavar="UUID", help="Test every active server of this user instead of one ID.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON (never the API key).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Servers probed at once.")
@click.pass_context
@library_errors
def servers_test(ctx, server_id, user_id, as_json, concurrency):
    """The form's [Testar Conexão]: GET {api_url}/api/server/version, and record the outcome.

    Sends X-Api-Key when the server has an api_key, waits at most the server's
    timeout per attempt, retries retry_attempts times with backoff. Prints
    reachable + latency + the WAHA version, or the reason in plain words (name does
    not resolve, connection refused, timed out, TLS error, API key rejected, not a
    WAHA server, server error). The outcome goes through report_waha_server_success /
    report_waha_server_failure, so a failing server cools down and
    get_available_waha_server offers the others first. Redirects are not followed
    and proxy variables are ignored: no request goes anywhere but the server's URL.
    Exit 1 when any server is unreachable.

    \b
    Example:
      waha-db servers test 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
      waha-db servers test --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --json
    """
    if (server_id is None) == (user_id is None):
        raise click.UsageError("give either a server ID or --user UUID (all of that user's active servers)")
    with _engine(ctx) as engine, server_health.autocommit_connection(engine) as connection:
        targets = server_health.load_servers(
            connection, server_ids=[server_id] if server_id else (), user_id=user_id
        )
        checked = server_health.test_servers(connection, targets, concurrency=concurrency)
    if as_json:
        click.echo(json.dumps([server_health.checked_as_json(item) for item in checked], indent=2, ensure_ascii=False))
    else:
        if not checked:
            click.echo(f"user {user_id} has no active servers")
        for item in checked:
            url = probe.display_api_url(item.server.api_url)
            click.echo(f"{item.server.nome} ({url}): {probe.describe_probe(item.probe)}")
            if item.record_error:
                click.echo(f"  not recorded: {item.record_error}")
            else:
                click.echo(f"  recorded: {server_health.describe_health(item.health)}")
    unreachable = [item.server.nome for item in checked if not item.probe.reachable]
    if unreachable:
        raise click.ClickException(f"{len(unreachable)} of {len(checked)} servers unreachable: {', '.join(unreachable)}")


@main.command()
@click.option("--interval", type=click.FloatRange(min=1), default=60, show_default=True, metavar="SECONDS",
              help="Seconds from the start of one round of checks to the next.")
@click.option("--once", is_flag=True, help="One round of checks, then exit (for cron).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Servers probed at once.")
@click.pass_context
@library_errors
def monitor(ctx, interval, once, concurrency):
    """Check every active server of every user on a schedule, and record the outcomes.

    Runs as the role of the database URL, which must see every server (the owner or
    service_role). Prints one line per state change (healthy -> failing, failing ->
    healthy) and when the database connection is lost or back; it reconnects with
    backoff and never stops because one server fails. SIGTERM or Ctrl-C stops it
    after the checks in flight (at most one timeout). With --once, exit 1 when the
    database cannot be reached.

    \b
    Example:
      waha-db monitor --interval 30
      waha-db monitor --once
    """
    stop = threading.Event()
    restore = fleet_monitor.stop_on_signals(stop)
    try:
        with _engine(ctx) as engine:
            click.echo(
                f"monitoring the active WAHA servers of every user at {database.connection_target(ctx.obj['url'])}"
                + (" (one round)" if once else f", every {interval:g} s; SIGTERM or Ctrl-C stops"),
                err=True,
            )
            stats = fleet_monitor.monitor(engine, interval=interval, once=once, concurrency=concurrency, stop=stop, emit=click.echo)
    finally:
        restore()
    click.echo(
        f"stopped after {stats.cycles} round(s), {stats.probes} check(s), {stats.state_changes} state change(s)",
        err=True,
    )


# --- sessions: capacity accounting (toolkit/fleet/allocation.py), and the benchmark (toolkit/checks/bench.py) ---


@main.group()
def sessions() -> None:
    """WhatsApp sessions: the capacity counters of the servers (sessions_ativas).

    \b
    Example:
      waha-db sessions reconcile            # report counters that differ from the sessions
      waha-db sessions reconcile --apply
    """


@sessions.command()
@click.option("--apply", is_flag=True, help="Correct the counters the rule allows (see above), after confirmation.")
@click.option("--server", "servers", multiple=True, type=click.UUID, metavar="ID",
              help="Also correct this server's counter when it is above its sessions (repeatable).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@library_errors
def reconcile(ctx, apply, servers, yes, as_json):
    """Compare each server's sessions_ativas with its occupying sessions, and correct them.

    A session occupies a slot unless its status is STOPPED, FAILED or DISCONNECTED
    (any case). Every difference is reported. With --apply, counters BELOW their
    sessions are corrected (they let allocation overfill the server); counters ABOVE
    may count sessions that live outside waha_sessions, so they are corrected only
    for the servers named with --server.

    \b
    Example:
      waha-db sessions reconcile
      waha-db sessions reconcile --apply --yes
      waha-db sessions reconcile --apply --server 3f0c2a9e-1b4d-4c8e-9f7a-0d1e2f3a4b5c
    """
    with _engine(ctx) as engine, engine.connect() as connection:
        report = allocation.reconcile(connection)
        connection.rollback()
        if apply and (allocation.to_correct(report.drifts, servers) or servers):
            if not as_json:
                click.echo(allocation.render_report(report))
            _confirm("Correct these counters?", yes, "correct them")
            with connection.begin():
                report = allocation.reconcile(connection, apply=True, servers=servers)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(allocation.render_report(report))


@main.command()
@click.option("--database-url", "bench_url", metavar="URL",
              help="Run on this EMPTY database instead of a throwaway PostgreSQL (it gets filled). "
              "DATABASE_URL is never used by bench.")
@click.option("--seconds", type=click.FloatRange(min=1), default=5, show_default=True,
              help="Duration of each selection measure.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
@library_errors
def bench(ctx, bench_url, seconds, as_json):
    """Measure server selection and session allocation; print the figures and the targets.

    On a throwaway PostgreSQL (the server binaries and pgbench must be installed),
    with 10,000 users x 5 servers plus one user with 1,000 servers:
    get_available_waha_server against the same query by hand and SELECT 1, and
    allocate_waha_session against the seed's three-statement flow with 8 clients.
    Takes about a minute. Exit 1 when a target is missed.

    \b
    Example:
      waha-db bench
      waha-db bench --json > bench.json
    """
    url = bench_url
    if url is None and ctx.parent.get_parameter_source("database_url") == click.core.ParameterSource.COMMANDLINE:
        url = ctx.obj.get("database_url")
    if url is not None:
        ctx.obj["url"] = database.parse_url(url)  # names the server in a connection failure
    result = benchmark.run_benchmark(url, seconds=seconds, progress=lambda message: click.echo(f"  {message}", err=True))
    click.echo(json.dumps(result.as_dict(), indent=2, default=str) if as_json else benchmark.render(result))
    missed = [target.name for target in result.targets if not target.met]
    if missed:
        raise click.ClickException(f"{len(missed)} target(s) missed: {'; '.join(missed)}")
