"""The checks of the migrations: the one suite `waha-db verify` runs and the tests run.

Each check is a plain function of a `Database` (the one-head check takes none) that
raises `CheckFailed` with what differs, and otherwise returns an optional note;
`verify` runs them in order on its throwaway or given database and reports a line
each, the tests run the same functions on databases of every kind (plain,
Supabase-like, legacy V1 with an application table). Each check brings the
database to the state it needs (head, or base) and leaves it migrated to head or
at base, as it says.

Schemas are compared as `Database.schema()` renders them: catalog snapshots
(waha_db.lifecycle.catalog), which PostgreSQL renders itself, so no pg_dump of a
matching version is needed; the tests also run the checks with pg_dump as the
schema, an oracle independent of the toolkit's own catalog code.
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from waha_db.checks import legacy, seed
from waha_db.checks.security_rules import check_security_rules
from waha_db.checks.suite_database import CheckFailed, Database, new_user, relation_exists
from waha_db.database import conninfo, database_message
from waha_db.lifecycle import catalog, migrate, revisions
from waha_db.lifecycle.model import include_object, metadata

# The suite's parts, for those who run them one by one (verify, the tests).
__all__ = [
    "CHECKS",
    "CheckFailed",
    "Database",
    "check_downgrade_to_base",
    "check_legacy_conversion",
    "check_metadata_matches",
    "check_no_drift",
    "check_offline_equals_online",
    "check_one_head",
    "check_revisions_up_down_up",
    "check_schema_file",
    "check_security_rules",
    "check_seed_examples",
    "check_upgrade_to_head",
    "describe_metadata_difference",
]


# --- the checks -----------------------------------------------------------------------------


def check_one_head() -> str:
    heads = revisions.script_directory().get_heads()
    if len(heads) != 1:
        raise CheckFailed(
            f"{len(heads)} heads", [f"head {head}" for head in heads] + ["merge them into one: alembic merge heads"]
        )
    return heads[0]


def check_upgrade_to_head(database: Database) -> str:
    """An upgrade to head records head in alembic_version (leaves the database at head)."""
    database.upgrade()
    head = revisions.head()
    recorded = database.revision()
    if recorded != head:
        raise CheckFailed(f"alembic_version says {recorded}, head is {head}")
    database.online_head = database.schema()
    return head


def check_metadata_matches(database: Database) -> None:
    """toolkit/waha_db/lifecycle/model.py equals the database at head, as `alembic check` compares them."""
    database.head()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"target_metadata": metadata, "include_object": include_object, "compare_type": True}
        )
        differences = compare_metadata(context, metadata)
    if differences:
        raise CheckFailed(
            f"{len(differences)} differences between toolkit/waha_db/lifecycle/model.py and the migrated database",
            [describe_metadata_difference(difference) for difference in differences],
        )


def describe_metadata_difference(difference: tuple[Any, ...] | list[tuple[Any, ...]]) -> str:
    """One of alembic's compare_metadata tuples in words: what the model has, what the database has."""
    if isinstance(difference, list):  # column-level changes come as a list of tuples
        return "; ".join(describe_metadata_difference(item) for item in difference)
    operation, *arguments = difference
    if operation.startswith("modify_"):
        _, schema, table, column, existing, database_value, model_value = difference
        return f"{operation[7:]} of {table}.{column}: database has {database_value!r}, toolkit/waha_db/lifecycle/model.py has {model_value!r}"
    subject = arguments[0]
    name = getattr(subject, "name", None) or getattr(getattr(subject, "table", None), "name", "")
    where = getattr(getattr(subject, "table", None), "name", None)
    described = f"{name} on {where}" if where and where != name else str(name)
    if isinstance(subject, sa.ForeignKeyConstraint):
        described += " -> " + ", ".join(element.target_fullname for element in subject.elements)
    side = "in toolkit/waha_db/lifecycle/model.py only" if operation.startswith("add_") else "in the database only"
    return f"{operation[operation.index('_') + 1 :].replace('_', ' ')} {described}: {side}"


def check_no_drift(database: Database) -> None:
    """The database at head equals the recorded head catalog (what `status --check` compares)."""
    database.head()
    with database.engine.connect() as connection:
        differences = catalog.detect_drift(connection)
    if differences:
        raise CheckFailed(
            "the migrated database differs from toolkit/waha_db/lifecycle/head_catalog.json "
            "(if the migrations changed on purpose: python -m waha_db.checks.head_catalog --write)",
            differences,
        )


def check_seed_examples(database: Database) -> None:
    """The seed's own statements, and the selection rules of get_available_waha_server, in one rolled-back transaction."""
    database.head()
    with psycopg.connect(conninfo(database.url)) as connection:
        try:
            problems = seed.run_examples(connection, lambda: new_user(connection))
        finally:
            connection.rollback()
    if problems:
        raise CheckFailed(f"{len(problems)} of the seed's examples or selection rules fail", problems)


def check_revisions_up_down_up(database: Database) -> int:
    """Every revision from base: upgrade to it (the schema changes), downgrade one step (the schema is
    what it was), upgrade again (the schema is what the first upgrade made). Leaves the database at head."""
    database.reset()
    problems = []
    before = database.schema()
    ids = revisions.ids()
    for revision in ids:
        database.upgrade(revision)
        first = database.schema()
        legacy_kept = revision == revisions.base() and database.baseline_rows.get("public.waha_config") is not None
        if first == before and not legacy_kept:  # the first revision keeps a legacy waha_config as it is
            problems.append(f"{revision}: changed nothing")
        database.downgrade(revisions.previous(revision) or "base")
        problems += [
            f"{revision}: {line}"
            for line in database.differences(before, database.schema(), "before it", "after its downgrade")
        ]
        try:
            database.upgrade(revision)
        except Exception as error:  # a downgrade that left objects behind makes the upgrade collide with them
            problems.append(f"{revision}: upgrading again after the downgrade failed: {database_message(error)}")
            raise CheckFailed("a downgrade did not undo its upgrade exactly", problems) from None
        problems += [
            f"{revision}: {line}"
            for line in database.differences(first, database.schema(), "first upgrade", "after down/up")
        ]
        before = first
    if problems:
        raise CheckFailed("a downgrade did not undo its upgrade exactly", problems)
    return len(ids)


def check_downgrade_to_base(database: Database) -> None:
    """From head, a downgrade to base removes every object the migrations created and nothing else: the
    schema is the baseline again, every row of the tables already there is back, and alembic_version
    stays, empty, as Alembic leaves it. Leaves the database at base."""
    database.head()
    database.downgrade("base")
    problems = [f"alembic_version still records {recorded}" for recorded in [database.revision()] if recorded]
    problems += database.differences(database.baseline, database.schema(), "before", "after")
    left = catalog.waha_objects(database.catalog())
    problems += [f"left behind: {section} {name}" for section, items in left.items() for name in items]
    rows = database.rows()
    problems += [
        f"rows of {table} differ from before the upgrade"
        for table, before in database.baseline_rows.items()
        if rows.get(table) != before
    ]
    if problems:
        raise CheckFailed("downgrade to base left objects behind or removed others", problems)


def check_offline_equals_online(database: Database) -> None:
    """The offline script (`waha-db upgrade --sql`), applied from base, yields the schema of the online upgrade.
    Leaves the database at base."""
    database.head()
    database.reset()
    database.run_script(migrate.offline_sql("head", owner=database.owner))
    differences = database.differences(database.online_head, database.schema(), "online", "offline")
    if database.revision() != revisions.head():
        differences.append(f"the offline script records revision {database.revision()}, head is {revisions.head()}")
    database.reset()
    if differences:
        raise CheckFailed(
            "the offline script (`waha-db upgrade --sql`) yields another schema than the online upgrade", differences
        )


def check_schema_file(database: Database) -> None:
    """In a checkout: sql/schema.sql equals what the migrations generate, applied from base it yields
    the online schema at head, and it records head, so a later upgrade has nothing to do. From an
    installed package (no repository file): the generated full schema, what `waha-db sql -o FILE`
    writes, does. Leaves the database at base."""
    generated = migrate.full_schema_sql()
    schema_file = migrate.checkout_schema_file()
    problems = []
    if schema_file is None:
        script, label = generated, "the generated full schema"
    elif not schema_file.is_file():
        raise CheckFailed(f"{schema_file} does not exist", ["generate it: waha-db sql"])
    else:
        script, label = schema_file.read_text(encoding="utf-8"), "sql/schema.sql"
        if script != generated:
            problems.append(
                "sql/schema.sql differs from what the migrations generate: regenerate it with `waha-db sql`"
            )
    database.head()
    database.reset()
    database.run_script(script)
    problems += database.differences(database.online_head, database.schema(), "online", label)
    recorded = database.revision()
    if recorded != revisions.head():
        problems.append(f"{label} records revision {recorded}, head is {revisions.head()}")
    else:
        database.upgrade()  # Alembic manages it afterwards: nothing to do, no error
    database.reset()
    if problems:
        raise CheckFailed(f"{label} is stale", problems)


def check_legacy_conversion(database: Database) -> None:
    """The seed's "Migração do Schema Antigo", through `upgrade --owner`, and back: a V1 waha_config
    (NULLs taking V2.1's defaults) becomes the owner's 'Servidor Padrão', leaves public at head, and
    comes back unchanged below the conversion. Leaves the database at base, without a waha_config."""
    database.reset()
    with psycopg.connect(conninfo(database.url), autocommit=True) as db:
        if relation_exists(db, "public.waha_config"):
            raise CheckFailed("this database already holds a public.waha_config: the check needs one without it")
        db.execute(legacy.LEGACY_V1_TABLE + legacy.LEGACY_V1_ROW_WITH_NULLS)
        before = db.execute("SELECT * FROM public.waha_config ORDER BY id").fetchall()
        owner = new_user(db)
    problems = []
    try:
        migrate.upgrade(database.engine, owner=owner)
        with psycopg.connect(conninfo(database.url), autocommit=True) as db:
            converted = db.execute(
                "SELECT user_id, nome, api_url, api_key, webhook_url, webhook_secret, timeout, retry_attempts, rate_limit, "
                "prioridade, max_sessions FROM public.waha_servers"
            ).fetchall()
            wanted = [
                (
                    owner,
                    "Servidor Padrão",
                    "https://waha.legacy.example",
                    "legacy-key",
                    None,
                    "legacy-secret",
                    45,
                    3,
                    120,
                    10,
                    50,
                )
            ]
            if converted != wanted:
                problems.append(f"converted rows: expected {wanted!r}, got {converted!r}")
            if relation_exists(db, "public.waha_config"):
                problems.append("public.waha_config still exists at head")
        migrate.downgrade(database.engine, revisions.previous(migrate.conversion_revision()) or "base")
        with psycopg.connect(conninfo(database.url), autocommit=True) as db:
            after = db.execute("SELECT * FROM public.waha_config ORDER BY id").fetchall()
        if after != before:
            problems.append(f"waha_config after the downgrade: expected {before!r}, got {after!r}")
    finally:
        database.reset()
        with psycopg.connect(conninfo(database.url), autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS public.waha_config")
            if relation_exists(db, "auth.users"):
                db.execute("DELETE FROM auth.users WHERE id = %s", (owner,))
    if problems:
        raise CheckFailed("the legacy waha_config did not convert (or come back) as the seed says", problems)


# The checks `verify` runs on each database, in order, with the line each is reported under.
CHECKS = (
    ("upgrade an empty database to head", check_upgrade_to_head),
    ("metadata (toolkit/waha_db/lifecycle/model.py) equals the migrated database", check_metadata_matches),
    ("no drift from the recorded head catalog", check_no_drift),
    (
        "security: row security, search_path, anon, TRUNCATE, policies, indexed foreign keys, alembic_version",
        check_security_rules,
    ),
    ("the seed's examples and the selection rules", check_seed_examples),
    ("every revision upgrades, downgrades and upgrades again", check_revisions_up_down_up),
    ("downgrade to base removes every object it created", check_downgrade_to_base),
    ("offline SQL yields the schema of the online upgrade", check_offline_equals_online),
    ("sql/schema.sql is fresh and yields the same schema", check_schema_file),
    ("the legacy waha_config converts with an owner and comes back", check_legacy_conversion),
)
