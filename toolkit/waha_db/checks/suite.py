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

import uuid

import psycopg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from waha_db.checks import legacy, seed
from waha_db.database import connect_engine, conninfo, database_message
from waha_db.lifecycle import catalog, migrate, revisions
from waha_db.lifecycle.model import include_object, metadata


class CheckFailed(Exception):
    """A check found a difference; `details` says what, one line each."""

    def __init__(self, summary: str, details: list[str] | None = None) -> None:
        super().__init__(summary)
        self.details = details or []


def waha_tables(connection: sa.Connection) -> list[str]:
    """The WAHA tables of public (every `waha_*` table but the legacy waha_config)."""
    return list(
        connection.exec_driver_sql(
            "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = 'public'::pg_catalog.regnamespace "
            "AND relkind IN ('r', 'p') AND relname LIKE 'waha\\_%%' AND relname <> 'waha_config' ORDER BY 1"
        ).scalars()
    )


_USER_TABLES = """
    SELECT pg_catalog.quote_ident(schemaname) || '.' || pg_catalog.quote_ident(tablename) FROM pg_catalog.pg_tables
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'alembic_version' ORDER BY 1
"""


class Database:
    """One database the checks run on.

    `baseline` is its schema when first seen (before any check), `online_head` its
    schema after the online upgrade to head; `owner` converts a legacy waha_config
    it may hold. `schema()` and `differences()` say what a schema is and how two
    compare; a subclass may render schemas another way (the tests use pg_dump).
    """

    def __init__(self, url: sa.URL, label: str = "", *, owner: uuid.UUID | None = None) -> None:
        self.label = label
        self.url = url
        self.owner = owner
        self.engine = connect_engine(url)
        self.baseline = self.schema()
        self.baseline_rows = self.rows()
        self.online_head = None

    def close(self) -> None:
        self.engine.dispose()

    def schema(self):
        """What the checks compare: the catalog snapshot."""
        return self.catalog()

    def catalog(self) -> dict:
        """The catalog snapshot, without Alembic's bookkeeping table (which Alembic keeps, empty, at base)."""
        with self.engine.connect() as connection:
            snapshot = catalog.catalog_snapshot(connection)
        return {
            section: items
            if isinstance(items, list)
            else {name: value for name, value in items.items() if not name.startswith("public.alembic_version")}
            for section, items in snapshot.items()
        }

    def differences(self, expected, actual, expected_label: str, actual_label: str) -> list[str]:
        return catalog.diff_snapshots(expected, actual, expected_label=expected_label, actual_label=actual_label)

    def rows(self) -> dict[str, list[str]]:
        """Every row of every table outside PostgreSQL's schemas (alembic_version aside), as text, by table."""
        with self.engine.connect() as connection:
            tables = connection.exec_driver_sql(_USER_TABLES).scalars().all()
            return {
                table: sorted(connection.exec_driver_sql(f"SELECT to_jsonb(t)::text FROM {table} AS t").scalars())
                for table in tables
            }

    def run_script(self, script: str) -> None:
        """A SQL script as psql would run it with ON_ERROR_STOP (it holds its own BEGIN/COMMIT), after
        `SET waha.config_owner` when the database has an owner for its legacy waha_config (as the README says)."""
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            if self.owner is not None:
                connection.execute("SELECT pg_catalog.set_config('waha.config_owner', %s, false)", (str(self.owner),))
            connection.execute(script)

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            return revisions.current_revision(connection)

    def upgrade(self, revision: str = "head") -> None:
        migrate.upgrade(self.engine, revision, owner=self.owner)

    def downgrade(self, revision: str) -> None:
        migrate.downgrade(self.engine, revision)

    def head(self) -> None:
        """At head, with `online_head` recorded."""
        if self.revision() != revisions.head():
            self.upgrade()
        if self.online_head is None:
            self.online_head = self.schema()

    def reset(self) -> None:
        """Back to base: downgrade to base, then drop Alembic's own bookkeeping table."""
        self.downgrade("base")
        with self.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS public.alembic_version")


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


def describe_metadata_difference(difference) -> str:
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


# splinter's rule, word for word in its comparison: int2vector's text form gives a
# 1-based array (a plain ::int2[] cast would start at 0).
UNINDEXED_FOREIGN_KEYS = """
    SELECT k.conrelid::pg_catalog.regclass::text || '.' || k.conname FROM pg_catalog.pg_constraint k
    WHERE k.contype = 'f' AND k.conrelid = ANY (%(qualified)s::pg_catalog.regclass[])
      AND NOT EXISTS (
          SELECT FROM pg_catalog.pg_index i
          WHERE i.indrelid = k.conrelid AND i.indisvalid
            AND k.conkey = (pg_catalog.string_to_array(i.indkey::text, ' ')::int2[])[1:pg_catalog.array_length(k.conkey, 1)]
      )
    ORDER BY 1
"""

SECURITY_QUERIES = {
    "row security is off": """
        SELECT c.relname FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relname = ANY (%(tables)s::text[]) AND NOT c.relrowsecurity
    """,
    "function without a fixed search_path": """
        SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::pg_catalog.regnamespace AND p.proname ~ 'waha'
          AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) AS setting WHERE setting LIKE 'search\\_path=%%')
    """,
    "anon or PUBLIC may use": """
        SELECT grantee || ' has ' || privilege_type || ' on ' || table_name
        FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name = ANY (%(tables)s::text[]) AND grantee IN ('anon', 'PUBLIC')
        UNION ALL
        SELECT grantee || ' may EXECUTE ' || routine_name
        FROM information_schema.role_routine_grants
        WHERE routine_schema = 'public' AND routine_name ~ 'waha' AND grantee IN ('anon', 'PUBLIC')
    """,
    "authenticated may TRUNCATE (it ignores row security)": """
        SELECT table_name FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name = ANY (%(tables)s::text[]) AND grantee = 'authenticated' AND privilege_type = 'TRUNCATE'
    """,
    # Supabase's linter (splinter 0001_unindexed_foreign_keys): a valid index whose
    # leading columns are the key's columns in the key's order; the same columns in
    # another order do not count.
    "foreign key without an index led by its columns in its order": UNINDEXED_FOREIGN_KEYS,
    "command without a policy for authenticated": """
        SELECT t || ': ' || cmd FROM pg_catalog.unnest(%(tables)s::text[]) AS t
        CROSS JOIN pg_catalog.unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS cmd
        WHERE NOT EXISTS (
            SELECT FROM pg_catalog.pg_policies p
            WHERE p.schemaname = 'public' AND p.tablename = t AND p.cmd IN (cmd, 'ALL') AND 'authenticated' = ANY (p.roles)
        )
    """,
    # Each side on its own: a wrapped USING must not hide a bare WITH CHECK.
    "policy that evaluates the caller per row, not once per query (write it as (select ...))": """
        SELECT p.tablename || '.' || p.policyname || ' ' || side.clause FROM pg_catalog.pg_policies AS p
        CROSS JOIN LATERAL (VALUES ('USING', p.qual), ('WITH CHECK', p.with_check)) AS side(clause, expression)
        WHERE p.schemaname = 'public' AND p.tablename = ANY (%(tables)s::text[])
          AND side.expression IS NOT NULL AND side.expression !~* '\\(\\s*select\\s'
        ORDER BY 1
    """,
    # Alembic's bookkeeping is no API table (revision 0011): a role of the app that may read or write
    # it could move the recorded revision, and make an upgrade fail or an exported file skip itself.
    "alembic_version open to the app's roles (no grant to PUBLIC, anon, authenticated, service_role; row security on)": """
        SELECT CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END
               || ' has ' || acl.privilege_type
        FROM pg_catalog.pg_class AS c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
        WHERE c.oid = pg_catalog.to_regclass('public.alembic_version')
          AND (acl.grantee = 0 OR pg_catalog.pg_get_userbyid(acl.grantee) IN ('anon', 'authenticated', 'service_role'))
        UNION ALL
        SELECT 'row security is off' FROM pg_catalog.pg_class AS c
        WHERE c.oid = pg_catalog.to_regclass('public.alembic_version') AND NOT c.relrowsecurity
    """,
    # splinter 0006_multiple_permissive_policies: permissive policies OR together, and
    # each one is evaluated for every row, so a role gets one per command.
    "more than one permissive policy for a role and command": """
        SELECT c.relname || ': ' || r.rolname || ' ' || action.cmd || ' ('
               || pg_catalog.string_agg(p.polname::text, ', ' ORDER BY p.polname) || ')'
        FROM pg_catalog.pg_policy AS p
        JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
        JOIN pg_catalog.pg_roles AS r ON p.polroles @> ARRAY[r.oid] OR p.polroles = ARRAY[0::oid]
        CROSS JOIN LATERAL pg_catalog.unnest(CASE p.polcmd
            WHEN 'r' THEN ARRAY['SELECT'] WHEN 'a' THEN ARRAY['INSERT'] WHEN 'w' THEN ARRAY['UPDATE']
            WHEN 'd' THEN ARRAY['DELETE'] ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END) AS action(cmd)
        WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relname = ANY (%(tables)s::text[])
          AND p.polpermissive
          AND r.rolname NOT LIKE 'pg\\_%%' AND r.rolname NOT LIKE 'supabase%%admin' AND NOT r.rolbypassrls
        GROUP BY c.relname, r.rolname, action.cmd
        HAVING pg_catalog.count(*) > 1
        ORDER BY 1
    """,
}


def check_security_rules(database: Database) -> list[str]:
    """Row security on, fixed search_path, nothing for anon and PUBLIC, no TRUNCATE for authenticated,
    a policy per command in the (select ...) form, every foreign key indexed (Supabase's linter's rules),
    and alembic_version out of the app's reach."""
    database.head()
    problems = []
    with database.engine.connect() as connection:
        tables = waha_tables(connection)
        parameters = {"tables": tables, "qualified": [f"public.{table}" for table in tables]}
        for rule, query in SECURITY_QUERIES.items():
            for (found,) in connection.exec_driver_sql(query, parameters):
                problems.append(f"{rule}: {found}")
        anon = connection.exec_driver_sql(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon')"
        ).scalar()
    if problems:
        raise CheckFailed(f"{len(problems)} security rules broken", problems)
    return [] if anon else ["role anon does not exist here (plain PostgreSQL): nothing to revoke from it"]


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


def new_user(connection: psycopg.Connection) -> uuid.UUID:
    """A new user id; where auth.users exists (Supabase), also a row of it."""
    user_id = uuid.uuid4()
    if connection.execute("SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL").fetchone()[0]:
        connection.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
    return user_id


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
        if db.execute("SELECT pg_catalog.to_regclass('public.waha_config')").fetchone()[0] is not None:
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
            if db.execute("SELECT pg_catalog.to_regclass('public.waha_config')").fetchone()[0] is not None:
                problems.append("public.waha_config still exists at head")
        migrate.downgrade(database.engine, revisions.previous(migrate.conversion_revision()))
        with psycopg.connect(conninfo(database.url), autocommit=True) as db:
            after = db.execute("SELECT * FROM public.waha_config ORDER BY id").fetchall()
        if after != before:
            problems.append(f"waha_config after the downgrade: expected {before!r}, got {after!r}")
    finally:
        database.reset()
        with psycopg.connect(conninfo(database.url), autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS public.waha_config")
            if db.execute("SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL").fetchone()[0]:
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
