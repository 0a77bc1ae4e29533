"""Upgrade, downgrade, offline SQL and history, over alembic.command.

The Alembic configuration is built here, pointing at the migrations shipped with
the package, so the toolkit works from any directory and from an installed wheel.
"""

from __future__ import annotations

import functools
import io
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError

from waha_db.errors import UserError
from waha_db.lifecycle import locks, revisions


def alembic_config(
    connection: sa.Connection | sa.Engine | None = None,
    *,
    database_url: str | None = None,
    owner: uuid.UUID | None = None,
    lock_timeout: float | None = None,
    application_name: str | None = None,
    output: TextIO | None = None,
) -> Config:
    """An Alembic Config for our migrations; a connection, when given, is handed to env.py.

    `lock_timeout` is the overall limit of the run's lock waits (waha_db.lifecycle.locks);
    a connection inside the caller's transaction gets one attempt, of at most
    locks.ATTEMPT_LOCK_TIMEOUT_SECONDS, and the caller retries.
    """
    config = Config(output_buffer=output, stdout=output) if output is not None else Config()
    config.set_main_option("script_location", str(revisions.MIGRATIONS_DIR))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    if owner is not None:
        config.attributes["owner"] = str(owner)
    if lock_timeout is not None:
        config.attributes["lock_timeout"] = lock_timeout
    if application_name is not None:
        config.attributes["application_name"] = application_name
    return config


def _for_command(config: Config, name: str) -> Config:
    """Tell env.py which command runs (it refuses a hand-made schema on upgrade only)."""
    config.attributes["command"] = name
    return config


def upgrade(connection: sa.Connection | sa.Engine, revision: str = "head", **settings: Any) -> None:
    command.upgrade(_for_command(alembic_config(connection, **settings), "upgrade"), revision)


def downgrade(connection: sa.Connection | sa.Engine, revision: str, **settings: Any) -> None:
    command.downgrade(_for_command(alembic_config(connection, **settings), "downgrade"), revision)


def offline_sql(
    revision: str = "head",
    *,
    start: str | None = None,
    downgrade_to: bool = False,
    owner: uuid.UUID | None = None,
    checks: bool = True,
) -> str:
    """The SQL script of an upgrade (or downgrade) without a database, as `alembic upgrade --sql` prints it.

    `checks=False` leaves out what env.py adds before the revisions (the legacy
    conversion's checks): the revisions' own SQL only.
    """
    buffer = io.StringIO()
    config = _for_command(alembic_config(owner=owner, output=buffer), "downgrade" if downgrade_to else "upgrade")
    config.attributes["checks"] = checks
    target = f"{start}:{revision}" if start else revision
    if downgrade_to:
        command.downgrade(config, target, sql=True)
    else:
        command.upgrade(config, target, sql=True)
    return buffer.getvalue()


# --- what each revision does, read from its own SQL ------------------------------

_CREATES_TABLE = re.compile(r"\bCREATE TABLE (?:IF NOT EXISTS )?public\.(\w+)", re.I)


@functools.cache
def revision_sql(revision: str) -> str:
    """The SQL an upgrade to `revision` from the one below it runs, as the offline script prints it."""
    below = revisions.previous(revision)
    return offline_sql(revision, start=below, checks=False) if below else offline_sql(revision, checks=False)


def tables_created(revision: str) -> tuple[str, ...]:
    """The tables of schema public that `revision` creates (and so its downgrade drops), in its order."""
    return tuple(dict.fromkeys(_CREATES_TABLE.findall(revision_sql(revision))))


_ALTERS_TABLE = re.compile(r"\bALTER TABLE (?:ONLY )?public\.(\w+)\b([^;]*);", re.I)
_ADDS_COLUMN = re.compile(r"\bADD COLUMN (?:IF NOT EXISTS )?(\w+)", re.I)


def columns_added(revision: str) -> dict[str, tuple[str, ...]]:
    """The columns `revision` adds to tables of schema public (and so its downgrade drops), by table."""
    added: dict[str, tuple[str, ...]] = {}
    for table, clauses in _ALTERS_TABLE.findall(revision_sql(revision)):
        columns = _ADDS_COLUMN.findall(clauses)
        if columns:
            added[table] = tuple(dict.fromkeys(added.get(table, ()) + tuple(columns)))
    return added


_DO_BLOCK = re.compile(r"\bDO \$\$.*?\$\$;", re.S)


@functools.cache
def revision_guards(revision: str) -> tuple[str, ...]:
    """The checks `revision` makes before it changes anything, which refuse with WAH06 (what alembic_version
    records is not what the database holds): DO blocks that only read the catalog, so a plan can run them
    in a savepoint and say, before asking, what the upgrade would refuse."""
    return tuple(block for block in _DO_BLOCK.findall(revision_sql(revision)) if "ERRCODE = 'WAH06'" in block)


@functools.cache
def conversion_revision() -> str:
    """The revision that converts the legacy waha_config into a server: the first that reads the owner setting.

    Read from the revisions' files, not their rendered SQL: migrations/env.py asks
    while Alembic runs it, when a nested Alembic run would replace its context.
    """
    for revision in revisions.ids():
        path = Path(revisions.script_directory().get_revision(revision).path)
        if "current_setting('waha.config_owner'" in path.read_text(encoding="utf-8"):
            return revision
    raise RuntimeError("no revision reads waha.config_owner: the migrations lost the legacy conversion")


# --- settings shared with migrations/env.py ----------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class MigrationError(CommandError, UserError):
    """A migration stopped for a reason the DBA can act on; the message says what to do.

    An Alembic CommandError, so the `alembic` command prints it as one `FAILED:` line
    instead of a traceback. Nothing was changed: the whole run is one transaction.
    """


class LegacyConversionRefused(MigrationError):
    """The legacy waha_config cannot be converted as it stands (no owner, bad owner, bad values)."""


class RetryableConflict(MigrationError):
    """An attempt was rolled back for a reason that passes (a lock held by another transaction, a role
    created at the same moment by another database's upgrade): the run retries after a back-off
    (waha_db.lifecycle.locks), and says what it met when the overall limit is spent."""

    def __init__(self, message: str, *, where: str, attempt_seconds: float) -> None:
        super().__init__(message)
        self.where = where
        self.attempt_seconds = attempt_seconds

    def wait_before_retry(
        self,
        connection: sa.Connection,
        deadline: locks.Deadline,
        attempt: int,
        progress: Callable[[str], None],
        watch: locks.BlockerWatch | None = None,
    ) -> None:
        """After attempt `attempt` failed on this: roll back, say what happened, pause before the next attempt.

        Raises, instead, what the run says when no attempt fits in what is left of the deadline.
        """
        connection.rollback()
        pause = deadline.backoff(attempt)
        if pause is None:
            raise self.gave_up(connection, deadline, attempt, watch) from None
        progress(f"attempt {attempt}: {self.attempt_line(connection, watch)}; rolled back, next attempt in {pause:g} s")
        time.sleep(pause)

    def attempt_line(self, connection: sa.Connection, watch: locks.BlockerWatch | None) -> str:
        return str(self).splitlines()[0].rstrip(".")

    def gave_up(
        self, connection: sa.Connection, deadline: locks.Deadline, attempts: int, watch: locks.BlockerWatch | None
    ) -> MigrationError:
        return MigrationError(
            f"{self.where}: {attempts} attempt(s) within {deadline.seconds:g} s, each rolled back: "
            f"{str(self).splitlines()[0]} Nothing was changed; run it again."
        )


class LockTimeout(RetryableConflict):
    """An attempt of a migration could not lock a table in time because another transaction holds it.

    The run retries (waha_db.lifecycle.locks); `gave_up` is what it says when the
    overall limit is spent: the backends that blocked the last attempt, read while it
    waited when a BlockerWatch watched it.
    """

    sqlstate = "55P03"

    def _blockers(self, connection: sa.Connection, watch: locks.BlockerWatch | None) -> tuple[list[locks.Holder], bool]:
        if watch is not None and watch.seen:
            return watch.blockers, True
        holders = locks.table_lock_holders(connection)
        connection.rollback()
        return holders, False

    def attempt_line(self, connection: sa.Connection, watch: locks.BlockerWatch | None) -> str:
        holders, seen_waiting = self._blockers(connection, watch)
        listed = "; ".join(holder.describe() for holder in holders)
        if seen_waiting:
            blocked = f"blocked by {listed}" if listed else "blocked by a transaction that has just finished"
        else:
            blocked = f"locks on WAHA tables held now by {listed}" if listed else "the holder has just finished"
        return f"{self.where} could not lock a WAHA table within {self.attempt_seconds:g} s, {blocked}"

    def gave_up(
        self, connection: sa.Connection, deadline: locks.Deadline, attempts: int, watch: locks.BlockerWatch | None
    ) -> MigrationError:
        holders, seen_waiting = self._blockers(connection, watch)
        return LockTimeout(
            locks.gave_up_message(
                attempts=attempts,
                seconds=deadline.seconds,
                attempt_seconds=round(min(deadline.attempt_limit, deadline.seconds), 2),
                last_attempt_seconds=self.attempt_seconds,
                where=self.where,
                holders=holders,
                seen_waiting=seen_waiting,
            ),
            where=self.where,
            attempt_seconds=self.attempt_seconds,
        )


class ConcurrentRoleCreation(RetryableConflict):
    """Another database's upgrade on the same server created a role (roles belong to the server, not to a
    database) between this attempt's check and its CREATE ROLE: the next attempt finds it made."""

    def gave_up(
        self, connection: sa.Connection, deadline: locks.Deadline, attempts: int, watch: locks.BlockerWatch | None
    ) -> MigrationError:
        return MigrationError(
            f"{self.where} met roles being created by another upgrade on this server on each of {attempts} "
            f"attempt(s) within {deadline.seconds:g} s; each attempt was rolled back: nothing was changed. "
            "Run the upgrade again once the other upgrades have finished."
        )


class DataRefused(MigrationError):
    """Rows a revision's new rule refuses (one server under two URLs, a session name occupying twice); listed."""


class RecordedRevisionRefused(MigrationError):
    """alembic_version names a revision whose objects are missing (written by someone else, or dropped since)."""


class HandMadeSchema(MigrationError):
    """The database has V2.1 tables made by hand, never managed by Alembic: adopt it first."""


def parse_owner(value: object, *, given_as: str = "the owner") -> uuid.UUID | None:
    """The owner of the legacy server as a UUID; None when not given; LegacyConversionRefused when malformed.

    The migrations' own rule (revision 0005 applies it in SQL): the usual
    8-4-4-4-12 form, any case; not the braces, URN or undashed forms Python's
    uuid.UUID also takes. `given_as` names where the value came from in the
    message ("--owner", "the owner").
    """
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if not _UUID.match(text):
        raise LegacyConversionRefused(
            f"{given_as} {text!r} is not a UUID in its usual form (8-4-4-4-12 hexadecimal digits). Nothing was changed.\n"
            "Give the id of the user (auth.users.id on Supabase) who will own the legacy WAHA server, "
            "e.g. `waha-db upgrade --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44` or "
            "`alembic -x owner=0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 upgrade head`."
        )
    return uuid.UUID(text)


_REFUSALS = {
    "WAH01": LegacyConversionRefused,
    "WAH02": LegacyConversionRefused,
    "WAH03": LegacyConversionRefused,
    "WAH04": LegacyConversionRefused,
    "WAH05": HandMadeSchema,
    "WAH06": RecordedRevisionRefused,
    "WAH07": LegacyConversionRefused,
    "WAH08": DataRefused,
}


def explain_database_error(
    error: sa.exc.DBAPIError, *, revision: str | None, attempt_seconds: float
) -> MigrationError | None:
    """A MigrationError for the DBA from a database error of a migration run; None when there is none to give.

    The migrations raise their refusals with SQLSTATEs WAH01..WAH08 and a hint; a lock
    timeout (55P03) becomes a message that names the revision, the wait, and how to
    find the blocking session; a role created at the same moment by another database's
    upgrade is a conflict the run retries; roles that are missing and may not be
    created are named, only those, with the statements that create them.
    """
    original = getattr(error, "orig", None)
    sqlstate = getattr(original, "sqlstate", None)
    diagnostic = getattr(original, "diag", None)
    where = f"revision {revision}" if revision else "the first revision of this run"
    if sqlstate in _REFUSALS and diagnostic is not None:
        lines = [diagnostic.message_primary or str(original)]
        if diagnostic.message_detail:
            lines.append(diagnostic.message_detail)
        lines.append("Nothing was changed: the upgrade runs in one transaction.")
        if diagnostic.message_hint:
            lines.append(diagnostic.message_hint)
        return _REFUSALS[sqlstate]("\n".join(lines))
    if sqlstate == "55P03":
        return LockTimeout(
            f"{where} could not lock a WAHA table within {attempt_seconds:g} s (one attempt): another transaction "
            "holds a lock on it; the attempt was rolled back.",
            where=where,
            attempt_seconds=attempt_seconds,
        )
    created = concurrently_created_role(original)
    if created:
        return ConcurrentRoleCreation(
            f"{where} found role {created} created at the same moment by another upgrade on this server "
            "(roles belong to the server, not to one database).",
            where=where,
            attempt_seconds=attempt_seconds,
        )
    missing = _MISSING_ROLES.match((diagnostic.message_primary or "") if diagnostic is not None else "")
    if sqlstate == "42501" and missing:
        return RolesMissing(
            missing_roles_refusal(missing["roles"].split(", "), missing["user"])
            + "\nNothing was changed: the upgrade runs in one transaction."
        )
    return None


# --- the roles the migrations create where missing -------------------------------------

# Revision 0004's refusal (frozen): 'the roles % are missing and % may not create them', whatever is missing.
_MISSING_ROLES = re.compile(r"^the roles (?P<roles>.+) are missing and (?P<user>.+) may not create them$")
_CREATES_ROLE = re.compile(r"\bCREATE ROLE (\w+)([^;]*);", re.I)


class RolesMissing(MigrationError):
    """Roles the migrations need are missing and the role running them may not create them."""


def concurrently_created_role(error: object) -> str | None:
    """The role another transaction created at the same moment as this one, from the error of this one's
    CREATE ROLE: a unique violation on pg_authid's name (both inserted it; the other committed first), or
    "role ... already exists" (the other committed between the check and the CREATE). None otherwise."""
    sqlstate = getattr(error, "sqlstate", None)
    diagnostic = getattr(error, "diag", None)
    if sqlstate == "23505" and getattr(diagnostic, "constraint_name", None) == "pg_authid_rolname_index":
        found = re.search(r"\(rolname\)=\((.+)\)", getattr(diagnostic, "message_detail", None) or "")
        return found.group(1) if found else "(one of authenticated, service_role)"
    if sqlstate == "42710":
        found = re.match(r'^role "(.+)" already exists$', getattr(diagnostic, "message_primary", None) or "")
        return found.group(1) if found else None
    return None


@functools.cache
def roles_created() -> dict[str, str]:
    """The roles a revision creates where they are missing, with the statement that creates each, read from
    the revisions' files: {"authenticated": "CREATE ROLE authenticated NOLOGIN;", ...}."""
    created: dict[str, str] = {}
    for revision in revisions.ids():
        text = Path(revisions.script_directory().get_revision(revision).path).read_text(encoding="utf-8")
        for role, options in _CREATES_ROLE.findall(text):
            created.setdefault(role, f"CREATE ROLE {role}{options};")
    return created


def roles_revision() -> str | None:
    """The revision that creates the roles where they are missing; None when none does."""
    for revision in revisions.ids():
        if _CREATES_ROLE.search(Path(revisions.script_directory().get_revision(revision).path).read_text("utf-8")):
            return revision
    return None


def needs_superuser(role: str) -> bool:
    """Whether creating `role` as the migrations do takes a superuser (BYPASSRLS does; CREATEROLE is enough otherwise)."""
    return "BYPASSRLS" in roles_created()[role].upper()


def missing_roles_refusal(missing: list[str], user: str) -> str:
    """Why the roles revision will stop: only the roles that are missing, and the statements that create them."""
    missing = sorted(missing)
    named = f"the role {missing[0]} is" if len(missing) == 1 else f"the roles {', '.join(missing)} are"
    statements = " ".join(roles_created()[role] for role in missing)
    return (
        f"{named} missing and {user} may not create {'it' if len(missing) == 1 else 'them'}"
        f"{' (BYPASSRLS takes a superuser)' if any(needs_superuser(role) for role in missing) else ''}.\n"
        f"Create {'it' if len(missing) == 1 else 'them'} as a superuser, then run the upgrade again: {statements}"
    )


# --- the full-schema file -----------------------------------------------------------

FULL_SCHEMA_PATH = revisions.CHECKOUT_ROOT / "sql" / "schema.sql"


def checkout_schema_file() -> Path | None:
    """sql/schema.sql of the repository checkout the toolkit runs from; None when it
    runs from an installed package (there is no repository file to keep fresh)."""
    if revisions.MIGRATIONS_DIR.parent == revisions.CHECKOUT_ROOT:
        return FULL_SCHEMA_PATH
    return None


FULL_SCHEMA_HEADER = """\
-- waha-db: the full WAHA multi-server schema V2.1 for a fresh install, revision {head}.
--
-- GENERATED from migrations/versions by `python -m waha_db.lifecycle.migrate` (waha_db.lifecycle.migrate.full_schema_sql);
-- do not edit: change the migrations and regenerate. A test fails when this file is stale.
--
-- Apply:   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/schema.sql
-- It runs in one transaction and records revision {head} in alembic_version, so
-- `alembic upgrade head` / `waha-db upgrade` manage the database afterwards.
-- On a database with the legacy waha_config, set the owner of its server first:
--   psql -v ON_ERROR_STOP=1 -c "SET waha.config_owner = 'UUID'" -f sql/schema.sql
-- (better: `waha-db upgrade --owner UUID`, see docs/UPGRADING.md).

"""


def full_schema_sql() -> str:
    """The text of sql/schema.sql: the offline upgrade from nothing to head, under a header."""
    return FULL_SCHEMA_HEADER.format(head=revisions.head()) + offline_sql("head")


class StaleSchemaFile(UserError):
    """sql/schema.sql differs from what the migrations generate."""


def check_full_schema(path: Path) -> None:
    """StaleSchemaFile unless `path` holds exactly what the migrations generate."""
    if not path.is_file() or path.read_text(encoding="utf-8") != full_schema_sql():
        raise StaleSchemaFile(f"{path} is stale (or missing): regenerate it with `waha-db sql`")


class NoSuchFolder(UserError):
    """The folder a file is to be written into does not exist (it is never created on the way)."""


def write_full_schema(path: Path = FULL_SCHEMA_PATH) -> Path:
    """Regenerate sql/schema.sql (or `path`) from the migrations; NoSuchFolder when its folder is missing.

    The folder is not created: a mistyped path would otherwise grow a tree of folders silently.
    """
    if not path.parent.is_dir():
        raise NoSuchFolder(f"cannot write {path}: the folder {path.parent} does not exist (create it first)")
    path.write_text(full_schema_sql(), encoding="utf-8")
    return path


def main(arguments: list[str] | None = None) -> None:
    """`python -m waha_db.lifecycle.migrate [--check] [PATH]`: regenerate (or check) sql/schema.sql."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m waha_db.lifecycle.migrate",
        description="Regenerate sql/schema.sql from the migrations (the same as `waha-db sql`).",
    )
    parser.add_argument("path", nargs="?", type=Path, default=FULL_SCHEMA_PATH, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is stale")
    options = parser.parse_args(arguments)
    try:
        if options.check:
            check_full_schema(options.path)
            print(f"{options.path} is up to date (revision {revisions.head()})")
        else:
            print(f"wrote {write_full_schema(options.path)}")
    except UserError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
