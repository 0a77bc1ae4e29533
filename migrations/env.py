"""Alembic environment of waha-db.

Where the database comes from, in this order:
  1. a Connection or Engine handed in through ``config.attributes["connection"]``
     (Alembic's cookbook hands a Connection, pytest-alembic an Engine, or an object
     whose ``connect()`` gives back the connection of its test's transaction);
  2. ``-x database_url=URL``;
  3. the ``DATABASE_URL`` environment variable;
  4. ``sqlalchemy.url`` of the ini file.

``-x`` options (or ``config.attributes`` of the same name): ``owner=UUID`` (who owns
the server converted from the legacy ``waha_config``), ``lock_timeout=SECONDS``
(the overall limit of lock waits, default 30).

Every upgrade or downgrade runs in one transaction that first takes an advisory
lock (two deploys at once serialise; the wait for it is bounded and says who holds
it), then sets ``lock_timeout`` to at most 2 s per attempt, so the application's
statements never queue behind a migration for longer than that. An attempt that
times out is rolled back and tried again after a back-off until the overall limit
(waha_db.lifecycle.locks); a connection handed in inside the caller's transaction
gets one attempt, and the caller retries. ``statement_timeout`` bounds each
statement (locks.STATEMENT_TIMEOUT_SECONDS). Server notices are logged once the
run has succeeded, never for a run that was rolled back. The owner is
handed to the SQL as the transaction-local setting ``waha.config_owner``, so the
offline ``--sql`` script makes the same decisions in SQL that the online run makes.
A database whose V2.1 tables were made by hand (no ``alembic_version``) is refused
in SQL too, before anything runs, with a pointer to ``waha-db adopt``. An upgrade
that converts the legacy ``waha_config`` first runs waha_db.lifecycle.conversion's
checks (values V2.1 refuses, a row that differs from the server it was converted
into before, the owner), in SQL, so the offline script refuses what the online run
refuses.

Errors the DBA can act on (a refused conversion, a lock not obtained in time, a
hand-made schema, a malformed URL, a server that cannot be reached, a server older
than waha-db supports) are raised as
``waha_db.lifecycle.migrate.MigrationError``, an Alembic ``CommandError``: the ``alembic``
command prints them as one ``FAILED:`` message, never with the URL's password.

Which command runs (only an upgrade is refused on a hand-made schema) is read from
``config.attributes["command"]``, which waha_db.lifecycle.migrate sets, else from the
``alembic`` command line's parsed arguments (``config.cmd_opts``).
"""

from __future__ import annotations

import logging
import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from waha_db.database import (
    DatabaseUrlError,
    UnsupportedServer,
    create_engine,
    describe_connection_failure,
    parse_url,
    require_supported_server,
)
from waha_db.lifecycle import conversion, locks
from waha_db.lifecycle.migrate import MigrationError, RetryableConflict, explain_database_error, parse_owner
from waha_db.lifecycle.model import include_object, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    # The `alembic` command: its ini's loggers show "Running upgrade ..." and our notices.
    fileConfig(config.config_file_name, disable_existing_loggers=False)
x_arguments = context.get_x_argument(as_dictionary=True)
# Server notices (what the conversion did, roles created...) go to Alembic's log,
# which alembic.ini shows at INFO.
notices = logging.getLogger("alembic.env")

# Refuses a hand-made V2.1 schema (tables present, never managed by Alembic) before
# any revision runs: the first V2.1 revision would otherwise die on "relation already exists".
HAND_MADE_SCHEMA_MESSAGE = (
    "this database holds a hand-made V2.1 schema: public.waha_servers or public.waha_sessions exists, "
    "but no Alembic revision was ever recorded (no alembic_version table)"
)
HAND_MADE_SCHEMA_HINT = (
    "Adopt the database: `waha-db adopt` (or waha_db.lifecycle.adopt.adopt) checks its tables against V2.1, "
    "lists what blocks the adoption, and otherwise completes them and records the head revision."
)
HAND_MADE_SCHEMA_GUARD = f"""
DO $$
BEGIN
    IF pg_catalog.to_regclass('public.alembic_version') IS NULL
       AND (pg_catalog.to_regclass('public.waha_servers') IS NOT NULL
            OR pg_catalog.to_regclass('public.waha_sessions') IS NOT NULL) THEN
        RAISE EXCEPTION '{HAND_MADE_SCHEMA_MESSAGE}'
            USING ERRCODE = 'WAH05',
                  DETAIL = 'The migrations would fail on "relation already exists".',
                  HINT = '{HAND_MADE_SCHEMA_HINT}';
    END IF;
END
$$
"""


def script_start_guard(start: str | None) -> str:
    """For an offline script: refuse a database that is not at the revision the script starts from.

    A script from nothing re-run on a database it already upgraded would otherwise
    die on `relation "alembic_version" already exists`; a script from revision X on
    a database elsewhere would run revisions twice or skip some. Runs before
    anything else, so nothing is changed. (`\\:` is a colon Alembic's text() leaves alone.)
    """
    expected = f"'{start}'" if start else "NULL"
    wanted = f"at revision {start}" if start else "with no revision recorded (no alembic_version table)"
    return f"""
DO $$
DECLARE
    found text;
BEGIN
    IF pg_catalog.to_regclass('public.alembic_version') IS NOT NULL THEN
        SELECT pg_catalog.string_agg(version_num, ', ') INTO found FROM public.alembic_version;
        found := COALESCE(found, 'none (alembic_version is empty)');
    END IF;
    IF found IS DISTINCT FROM {expected} THEN
        RAISE EXCEPTION 'this script is for a database {wanted}, but this one is at revision %: nothing was changed',
                COALESCE(found, 'none (no alembic_version table)')
            USING ERRCODE = 'WAH09',
                  HINT = 'Run `waha-db status` to see where it stands, then `waha-db upgrade`, or generate the script '
                         'from its revision: `waha-db upgrade --sql FROM\\:head`.';
    END IF;
END
$$
"""


def given_url() -> str | None:
    """The URL as given: `-x database_url`, else DATABASE_URL (the one place env.py reads it)."""
    return x_arguments.get("database_url") or os.environ.get("DATABASE_URL")


def database_url() -> sa.URL:
    """The database's URL on the psycopg 3 driver; a MigrationError that never shows it when missing or malformed."""
    url = given_url() or config.get_main_option("sqlalchemy.url")
    if not url:
        raise MigrationError(
            "no database given: use `alembic -x database_url=postgresql://USER@HOST/DB upgrade head` "
            "or set DATABASE_URL"
        )
    try:
        return parse_url(url)
    except DatabaseUrlError as error:
        raise MigrationError(str(error)) from None


def connect(engine: sa.Engine) -> sa.Connection:
    """A connection of `engine`; when the server cannot be reached or refuses us, a MigrationError
    of one line (host, port, database, the server's reason; never the password)."""
    try:
        return engine.connect()
    except sa.exc.DBAPIError as error:
        raise MigrationError(describe_connection_failure(engine.url, error)) from None


def setting(name: str, default=None):
    """An -x option, else the same key of config.attributes (set by waha_db.lifecycle.migrate)."""
    value = x_arguments.get(name)
    return value if value is not None else config.attributes.get(name, default)


def overall_lock_timeout() -> float:
    """The overall limit of this run's lock waits, in seconds (-x lock_timeout, default 30)."""
    try:
        return locks.parse_lock_timeout(setting("lock_timeout", locks.DEFAULT_LOCK_TIMEOUT_SECONDS))
    except locks.LockTimeoutSetting as error:
        raise MigrationError(str(error)) from None


def prepare_transaction(deadline: locks.Deadline, connection: sa.Connection | None = None) -> float:
    """Serialise concurrent runs, bound lock waits, hand the owner to SQL, refuse a hand-made schema.

    Online, the advisory lock is polled within the deadline (locks.take_migration_lock).
    The offline script cannot poll: it bounds the wait with lock_timeout, which also
    limits pg_advisory_xact_lock, then lowers it to one attempt's. Statements that
    return nothing (DO blocks), so psql prints no stray rows. Returns the attempt's
    lock_timeout in seconds.
    """
    legacy_owner = parse_owner(setting("owner"))
    attempt_seconds = deadline.attempt_lock_timeout()
    if connection is None:
        context.execute(script_start_guard(context.get_starting_revision_argument()))
        context.execute(f"SET LOCAL lock_timeout = {locks.milliseconds(deadline.seconds)}")
        context.execute(f"DO $$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock({locks.MIGRATION_LOCK_KEY}); END $$")
    else:
        locks.take_migration_lock(connection, deadline, lambda line: notices.info("%s", line))
    context.execute(f"SET LOCAL lock_timeout = {locks.milliseconds(attempt_seconds)}")
    context.execute(f"SET LOCAL statement_timeout = {locks.STATEMENT_TIMEOUT_SECONDS * 1000}")
    if legacy_owner is not None:
        context.execute(f"SET LOCAL waha.config_owner = '{legacy_owner}'")
    if context.get_context().as_sql or _guards_hand_made_schema():
        context.execute(HAND_MADE_SCHEMA_GUARD)
    if setting("checks", True) and conversion.runs_the_conversion(_upgrade_destination()):
        context.execute(conversion.preflight_sql())
    return attempt_seconds


def _upgrade_destination() -> str | tuple[str, ...] | None:
    """The destination of an upgrade, for the checks before the conversion; None for other commands.

    A program that drives alembic.command itself without naming the command (pytest-alembic,
    Alembic's cookbook) gets the checks too whenever it gives a destination: they read the
    database's revision and do nothing where the conversion has run, so on a downgrade
    they are a no-op.
    """
    return _destination() if command_name() in ("upgrade", None) else None


def _destination() -> str | tuple[str, ...] | None:
    """The revision this run moves to (a tuple of ids for "heads"); None for commands without one."""
    try:
        return context.get_revision_argument()
    except KeyError:  # commands without a destination (current, check) never set one
        return None


def command_name() -> str | None:
    """The Alembic command this run serves ("upgrade", "downgrade", "current", "check"...); None when untold.

    waha_db.lifecycle.migrate says so in config.attributes["command"]. The `alembic` command line
    keeps its parsed arguments in config.cmd_opts, whose `cmd` is (the alembic.command
    function, its positional argument names, its keyword names).
    """
    named = config.attributes.get("command")
    if named:
        return str(named)
    parsed = getattr(config.cmd_opts, "cmd", None)
    if parsed:
        return getattr(parsed[0], "__name__", None)
    return None


def direction() -> str | None:
    """Whether this run is an "upgrade" or a "downgrade"; None for other commands, or when untold."""
    name = command_name()
    return name if name in ("upgrade", "downgrade") else None


def _guards_hand_made_schema() -> bool:
    """Whether to refuse a hand-made schema: on an upgrade, but not on `current`, `check` or `history`,
    which must still work there.

    A program that drives alembic.command itself without naming the command (pytest-alembic,
    Alembic's cookbook) is guarded when it gives a destination revision (upgrade, downgrade,
    stamp): on a database without alembic_version each of those would record a revision
    over tables Alembic never made.
    """
    name = command_name()
    if name is not None:
        return name == "upgrade"
    return _destination() is not None


def run_migrations_offline() -> None:
    context.configure(
        url=database_url() if given_url() else "postgresql+psycopg://",
        target_metadata=metadata,
        include_object=include_object,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=False,
    )
    # Alembic's offline version INSERT carries RETURNING, which psql prints as a stray row.
    context.get_context()._version.implicit_returning = False
    with context.begin_transaction():
        prepare_transaction(locks.Deadline(overall_lock_timeout()))
        context.run_migrations()


def failing_revision(applied: list, started_at: str | None) -> str | None:
    """The revision that was running when an error struck: the one after the last applied
    (after the revision the run started at, when none was applied yet); None when unknown."""
    if applied:
        last = applied[-1]
        if not last.is_upgrade:  # undoing revisions: the next one down was being undone
            return last.down_revision_ids[0] if last.down_revision_ids else None
        after = last.up_revision_id
    elif direction() == "downgrade":
        return started_at
    elif direction() == "upgrade":
        after = started_at
    else:
        return None
    children = [script.revision for script in context.script.walk_revisions() if script.down_revision == after]
    return children[0] if children else None


def run_with_connection(connection: sa.Connection, deadline: locks.Deadline) -> None:
    """One attempt: the migrations in one transaction; the notices are logged once it has succeeded."""
    try:
        require_supported_server(connection)
    except UnsupportedServer as error:
        raise MigrationError(str(error)) from None
    applied: list = []  # alembic MigrationInfo of each revision run so far, to name the one that failed
    started_at: list[str | None] = []
    said: list[str] = []
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=False,
        on_version_apply=lambda *, step, **_: applied.append(step),
    )
    driver_connection = connection.connection.driver_connection

    def collect_notice(diagnostic) -> None:
        said.append(diagnostic.message_primary)

    driver_connection.add_notice_handler(collect_notice)
    attempt_seconds = deadline.attempt_lock_timeout()
    try:
        with context.begin_transaction():
            attempt_seconds = prepare_transaction(deadline, connection)
            started_at.append(context.get_context().get_current_revision())
            context.run_migrations()
    except sa.exc.DBAPIError as error:
        explained = explain_database_error(
            error,
            revision=failing_revision(applied, started_at[0] if started_at else None),
            attempt_seconds=attempt_seconds,
        )
        if explained is None:
            raise
        raise explained from error
    finally:
        driver_connection.remove_notice_handler(collect_notice)
    for message in said:
        notices.info("%s", message)


def run_retrying(connection: sa.Connection) -> None:
    """Attempts until one gets its locks (or finds the roles another upgrade was creating made) or the overall
    limit is spent (this run owns the transaction); who blocks an attempt is read while it waits."""
    deadline = locks.Deadline(overall_lock_timeout())
    watch = locks.BlockerWatch(connection.engine)
    backend = connection.connection.driver_connection.info.backend_pid
    attempt = 1
    try:
        while True:
            try:
                with watch.watching(backend):
                    run_with_connection(connection, deadline)
                return
            except RetryableConflict as conflict:
                conflict.wait_before_retry(connection, deadline, attempt, lambda line: notices.info("%s", line), watch)
                attempt += 1
    finally:
        watch.close()


def run_on(connection: sa.Connection) -> None:
    """The run on a connection handed in: inside the caller's transaction, one attempt; else retried."""
    if connection.in_transaction():  # the caller's transaction: one attempt, the caller retries
        run_with_connection(connection, locks.Deadline(overall_lock_timeout()))
    else:
        run_retrying(connection)


def run_migrations_online() -> None:
    handed_in = config.attributes.get("connection")
    if isinstance(handed_in, sa.Connection):
        run_on(handed_in)
    elif handed_in is not None:  # an Engine, or what stands for one: its connect() gives the connection
        with connect(handed_in) as connection:
            run_on(connection)
    else:
        engine = create_engine(
            database_url(), application_name=setting("application_name", "alembic (waha-db migrations)")
        )
        try:
            with connect(engine) as connection:
                run_retrying(connection)
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
