"""The CI check of the migrations: `waha-db verify`.

Runs on a throwaway PostgreSQL when no database is given (so it works on a fresh
machine with nothing configured), there on two databases: plain PostgreSQL, and one
shaped like Supabase (auth.users, anon/authenticated/service_role and Supabase's
default privileges, see waha_db.checks.supabase). Given a database URL, it runs on that
database, which must be empty (nothing in schema public: a fresh Supabase project
qualifies), and leaves it empty again; the roles authenticated and service_role, if
the migrations created them, stay (roles are never dropped).

Each check is one function that raises `CheckFailed` with what differs; schemas are
compared as catalog snapshots (waha_db.lifecycle.catalog), which PostgreSQL renders itself, so
no pg_dump of a matching version is needed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable
from xml.etree import ElementTree

import psycopg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from waha_db.lifecycle import catalog
from waha_db.lifecycle import revisions

from waha_db.lifecycle import migrate
from waha_db.database import connect_engine, conninfo, display_url, mask_password, parse_url
from waha_db.lifecycle.model import include_object, metadata
from waha_db.checks.supabase import install_auth_stub
from waha_db.errors import UserError



def waha_tables(connection: sa.Connection) -> list[str]:
    """The WAHA tables of public (every `waha_*` table but the legacy waha_config)."""
    return list(connection.exec_driver_sql(
        "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = 'public'::pg_catalog.regnamespace "
        "AND relkind IN ('r', 'p') AND relname LIKE 'waha\\_%%' AND relname <> 'waha_config' ORDER BY 1"
    ).scalars())


class CheckFailed(Exception):
    """A check found a difference; `details` says what, one line each."""

    def __init__(self, summary: str, details: list[str] | None = None) -> None:
        super().__init__(summary)
        self.details = details or []


class VerifyRefused(UserError):
    """verify will not run on this database (it is not empty)."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    seconds: float
    summary: str = ""
    details: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """`PASS  name  0.12s` (with its note), or `FAIL  name`, what failed, and the details."""
        note = f" ({self.summary})" if self.passed and self.summary else ""
        lines = [f"{'PASS' if self.passed else 'FAIL'}  {self.name}{note}  {self.seconds:.2f}s"]
        if not self.passed:
            lines.append(f"      {self.summary}")
        return lines + [f"      - {line}" for line in self.details]


@dataclass
class Report:
    target: str
    checks: list[CheckResult]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> str:
        failed = sum(not check.passed for check in self.checks)
        return (
            f"{len(self.checks)} checks on {self.target}: {len(self.checks) - failed} passed, "
            f"{failed} failed in {self.seconds:.1f}s"
        )

    def as_json(self) -> dict:
        return {
            "target": self.target,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "checks": [
                {"name": c.name, "passed": c.passed, "seconds": round(c.seconds, 3), "summary": c.summary, "details": c.details}
                for c in self.checks
            ],
        }

    def junit_xml(self) -> str:
        failures = sum(not check.passed for check in self.checks)
        suite = ElementTree.Element(
            "testsuite", name="waha-db verify", tests=str(len(self.checks)), failures=str(failures),
            errors="0", time=f"{self.seconds:.3f}",
        )
        for check in self.checks:
            case = ElementTree.SubElement(suite, "testcase", classname="waha-db.verify", name=check.name, time=f"{check.seconds:.3f}")
            if not check.passed:
                failure = ElementTree.SubElement(case, "failure", message=check.summary)
                failure.text = "\n".join(check.details)
        ElementTree.indent(suite)
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


# What is in a database's public schema, for the refusal of a non-empty database.
_CONTENTS_OF_PUBLIC = """
    SELECT kind || ' ' || name FROM (
        SELECT 'relation' AS kind, c.relname::text AS name
        FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r','p','v','m','S','f')
        UNION ALL
        SELECT 'function', p.proname::text FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT 'type', t.typname::text FROM pg_catalog.pg_type t
        WHERE t.typnamespace = 'public'::pg_catalog.regnamespace AND t.typtype IN ('e', 'd', 'r')
        UNION ALL
        SELECT 'schema', n.nspname::text FROM pg_catalog.pg_namespace n WHERE n.nspname = 'waha_legacy'
    ) AS found ORDER BY kind <> 'relation', kind, name LIMIT 6
"""


def contents_of_public(connection: sa.Connection) -> list[str]:
    """What makes a database non-empty for verify: anything in schema public (or a waha_legacy schema)."""
    return [row for (row,) in connection.exec_driver_sql(_CONTENTS_OF_PUBLIC)]


class Target:
    """One database the checks run on, empty at the start of each sequence of checks."""

    def __init__(self, label: str, url: sa.URL) -> None:
        self.label = label
        self.url = url
        self.engine = connect_engine(url)
        self.baseline: dict = {}
        self.online_head: dict = {}

    def snapshot(self) -> dict:
        with self.engine.connect() as connection:
            return catalog.catalog_snapshot(connection)

    def run_script(self, script: str) -> None:
        """A SQL script as psql would run it with ON_ERROR_STOP (it holds its own BEGIN/COMMIT)."""
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            connection.execute(script)

    def reset(self) -> None:
        """Back to empty: downgrade to base, then drop Alembic's own bookkeeping table."""
        migrate.downgrade(self.engine, "base")
        with self.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS public.alembic_version")


# --- the checks -----------------------------------------------------------------------------


def check_one_head() -> str:
    heads = revisions.script_directory().get_heads()
    if len(heads) != 1:
        raise CheckFailed(f"{len(heads)} heads", [f"head {head}" for head in heads] + ["merge them into one: alembic merge heads"])
    return heads[0]


def check_upgrade_to_head(target: Target) -> str:
    migrate.upgrade(target.engine)
    head = revisions.head()
    with target.engine.connect() as connection:
        recorded = connection.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar()
    if recorded != head:
        raise CheckFailed(f"alembic_version says {recorded}, head is {head}")
    target.online_head = target.snapshot()
    return head


def check_metadata_matches(target: Target) -> None:
    with target.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"target_metadata": metadata, "include_object": include_object, "compare_type": True}
        )
        differences = compare_metadata(context, metadata)
    if differences:
        raise CheckFailed(
            f"{len(differences)} differences between toolkit/lifecycle/model.py and the migrated database",
            [describe_metadata_difference(difference) for difference in differences],
        )


def describe_metadata_difference(difference) -> str:
    """One of alembic's compare_metadata tuples in words: what the model has, what the database has."""
    if isinstance(difference, list):  # column-level changes come as a list of tuples
        return "; ".join(describe_metadata_difference(item) for item in difference)
    operation, *arguments = difference
    if operation.startswith("modify_"):
        _, schema, table, column, existing, database_value, model_value = difference
        return f"{operation[7:]} of {table}.{column}: database has {database_value!r}, toolkit/lifecycle/model.py has {model_value!r}"
    subject = arguments[0]
    name = getattr(subject, "name", None) or getattr(getattr(subject, "table", None), "name", "")
    where = getattr(getattr(subject, "table", None), "name", None)
    described = f"{name} on {where}" if where and where != name else str(name)
    if isinstance(subject, sa.ForeignKeyConstraint):
        described += " -> " + ", ".join(element.target_fullname for element in subject.elements)
    side = "in toolkit/lifecycle/model.py only" if operation.startswith("add_") else "in the database only"
    return f"{operation[operation.index('_') + 1:].replace('_', ' ')} {described}: {side}"


def check_no_drift(target: Target) -> None:
    with target.engine.connect() as connection:
        differences = catalog.detect_drift(connection)
    if differences:
        raise CheckFailed(
            "the migrated database differs from toolkit/lifecycle/head_catalog.json "
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


def check_security_rules(target: Target) -> list[str]:
    problems = []
    with target.engine.connect() as connection:
        tables = waha_tables(connection)
        parameters = {"tables": tables, "qualified": [f"public.{table}" for table in tables]}
        for rule, query in SECURITY_QUERIES.items():
            for (found,) in connection.exec_driver_sql(query, parameters):
                problems.append(f"{rule}: {found}")
        anon = connection.exec_driver_sql("SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon')").scalar()
    if problems:
        raise CheckFailed(f"{len(problems)} security rules broken", problems)
    return [] if anon else ["role anon does not exist here (plain PostgreSQL): nothing to revoke from it"]


def check_seed_examples(target: Target) -> None:
    """The seed's own statements, and the selection rules of get_available_waha_server, in one rolled-back transaction."""
    problems: list[str] = []
    with psycopg.connect(conninfo(target.url)) as connection:
        try:
            _seed_examples(connection, problems)
        finally:
            connection.rollback()
    if problems:
        raise CheckFailed(f"{len(problems)} of the seed's examples or selection rules fail", problems)


def _new_user(connection: psycopg.Connection) -> uuid.UUID:
    user_id = uuid.uuid4()
    if connection.execute("SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL").fetchone()[0]:
        connection.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
    return user_id


def _seed_examples(db: psycopg.Connection, problems: list[str]) -> None:
    def expect(what: str, got, wanted) -> None:
        if got != wanted:
            problems.append(f"{what}: expected {wanted!r}, got {got!r}")

    def best(user_id, excluded=None):
        if excluded is None:
            row = db.execute("SELECT nome FROM public.get_available_waha_server(%s)", (user_id,)).fetchone()
        else:
            row = db.execute("SELECT nome FROM public.get_available_waha_server(%s, %s)", (user_id, excluded)).fetchone()
        return row[0] if row else None

    # "Como Usar" 1 and 2: the seed's three servers, by column name.
    user = _new_user(db)
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, api_key, descricao, prioridade, max_sessions) "
        "VALUES (%s, 'Servidor Principal', 'https://waha1.seudominio.example', 'sua-api-key', 'Servidor principal de produção', 10, 50)",
        (user,),
    )
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, max_sessions) "
        "VALUES (%s, 'Servidor Backup', 'https://waha2.seudominio.example', 5, 30)",
        (user,),
    )
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, ativo, max_sessions) "
        "VALUES (%s, 'Servidor de Teste', 'https://waha-test.seudominio.example', false, 10)",
        (user,),
    )
    # "Como Usar" 3: the listing query.
    listing = db.execute(
        "SELECT nome, api_url, ativo, sessions_ativas, max_sessions, prioridade FROM public.waha_servers "
        "WHERE user_id = %s ORDER BY prioridade DESC, nome",
        (user,),
    ).fetchall()
    expect("seed listing order", [row[0] for row in listing], ["Servidor Principal", "Servidor Backup", "Servidor de Teste"])
    expect("seed defaults of Servidor de Teste (prioridade, ativo)", (listing[2][5], listing[2][2]), (0, False))
    # "Como Usar" 4: the best server.
    expect("get_available_waha_server for the seed's servers", best(user), "Servidor Principal")
    # "Como Usar" 5: a session on a given server, then the counter update.
    principal = db.execute("SELECT id FROM public.waha_servers WHERE user_id = %s AND nome = 'Servidor Principal'", (user,)).fetchone()[0]
    db.execute(
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 'sessao-cliente-001', 'connecting')",
        (user, principal),
    )
    db.execute("UPDATE public.waha_servers SET sessions_ativas = sessions_ativas + 1 WHERE id = %s", (principal,))
    # The app's fallback: excluding the failed server gives the next one.
    expect("fallback excluding Servidor Principal", best(user, [principal]), "Servidor Backup")
    # A full server is skipped; a disabled one never qualifies.
    db.execute("UPDATE public.waha_servers SET sessions_ativas = max_sessions WHERE id = %s", (principal,))
    expect("full Servidor Principal is skipped", best(user), "Servidor Backup")
    db.execute("UPDATE public.waha_servers SET sessions_ativas = max_sessions WHERE user_id = %s AND ativo", (user,))
    expect("every active server full: no row", best(user), None)

    # "Cenário 1": positional INSERTs, in the seed's column order.
    scenario = _new_user(db)
    for name, url, key, description, priority, capacity in (
        ("Principal", "https://waha-prod.example", "key1", "Servidor principal", 10, 100),
        ("Backup", "https://waha-backup.example", "key2", "Servidor de backup", 5, 50),
    ):
        db.execute(
            "INSERT INTO public.waha_servers VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, true, "
            "NULL, NULL, 30, 3, 100, %s, %s, 0, NOW(), NOW())",
            (scenario, name, url, key, description, priority, capacity),
        )
    expect("Cenário 1: Principal first", best(scenario), "Principal")
    db.execute("UPDATE public.waha_servers SET sessions_ativas = max_sessions WHERE user_id = %s AND nome = 'Principal'", (scenario,))
    expect("Cenário 1: Backup when Principal is at its limit", best(scenario), "Backup")

    # Equal priority: the lower load wins, compared exactly (1/3 < 2/5; integer division ties them at 0).
    load = _new_user(db)
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, sessions_ativas, max_sessions) VALUES "
        "(%s, 'two-fifths', 'https://a.example', 5, 2, 5), (%s, 'one-third', 'https://b.example', 5, 1, 3)",
        (load, load),
    )
    expect("equal priority: lower exact load wins", best(load), "one-third")
    # Priority beats load.
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, sessions_ativas, max_sessions) VALUES "
        "(%s, 'busy-but-preferred', 'https://c.example', 6, 9, 10)",
        (load,),
    )
    expect("higher priority wins over lower load", best(load), "busy-but-preferred")
    # An unknown user gets no row, not an error.
    expect("unknown user: no row", best(uuid.uuid4()), None)
    # The rules the form implies are the database's.
    for column, value, constraint in (
        ("prioridade", 11, "waha_servers_prioridade_range_check"),
        ("max_sessions", 0, "waha_servers_max_sessions_positive_check"),
        ("api_url", "ftp://waha.example", "waha_servers_api_url_http_check"),
    ):
        db.execute("SAVEPOINT rule")
        try:
            db.execute(
                f"INSERT INTO public.waha_servers (user_id, nome, api_url, {column}) VALUES (%s, 'x', 'https://rule.example', %s)"
                if column != "api_url" else "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (%s, 'x', %s)",
                (load, value),
            )
            problems.append(f"{column} = {value!r} was accepted; expected {constraint} to refuse it")
        except psycopg.errors.CheckViolation as error:
            expect(f"constraint refusing {column} = {value!r}", error.diag.constraint_name, constraint)
        db.execute("ROLLBACK TO SAVEPOINT rule")


def check_revisions_up_down_up(target: Target) -> int:
    """Every revision: upgrade to it, downgrade one step, upgrade again; the schema after each re-upgrade is the same."""
    target.reset()
    problems = []
    ids = revisions.ids()
    for revision in ids:
        migrate.upgrade(target.engine, revision)
        first = target.snapshot()
        migrate.downgrade(target.engine, "-1")
        migrate.upgrade(target.engine, revision)
        again = target.snapshot()
        problems += [f"{revision}: {line}" for line in catalog.diff_snapshots(first, again, expected_label="first upgrade", actual_label="after down/up")]
    if problems:
        raise CheckFailed("a downgrade did not undo its upgrade exactly", problems)
    return len(ids)


def check_downgrade_to_base(target: Target) -> None:
    target.reset()
    differences = catalog.diff_snapshots(target.baseline, target.snapshot(), expected_label="before", actual_label="after")
    if differences:
        raise CheckFailed("downgrade to base left objects behind or removed others", differences)


def check_offline_equals_online(target: Target) -> None:
    target.run_script(migrate.offline_sql("head"))
    differences = catalog.diff_snapshots(target.online_head, target.snapshot(), expected_label="online", actual_label="offline")
    target.reset()
    if differences:
        raise CheckFailed("the offline script (`waha-db upgrade --sql`) yields another schema than the online upgrade", differences)


def check_schema_file(target: Target) -> None:
    """In a checkout: sql/schema.sql equals what the migrations generate, and applying
    it yields the online schema at head. From an installed package (no repository
    file): the generated full schema, what `waha-db sql -o FILE` writes, does."""
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
            problems.append("sql/schema.sql differs from what the migrations generate: regenerate it with `waha-db sql`")
    target.run_script(script)
    problems += catalog.diff_snapshots(target.online_head, target.snapshot(), expected_label="online", actual_label=label)
    with target.engine.connect() as connection:
        recorded = connection.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar()
    if recorded != revisions.head():
        problems.append(f"{label} records revision {recorded}, head is {revisions.head()}")
    target.reset()
    if problems:
        raise CheckFailed(f"{label} is stale", problems)


LEGACY_V1 = """
CREATE TABLE public.waha_config (
    id integer PRIMARY KEY CHECK (id = 1), api_url text, api_key text, webhook_url text, webhook_secret text,
    timeout integer, retry_attempts integer, rate_limit integer,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
INSERT INTO public.waha_config (id, api_url, api_key, webhook_url, webhook_secret, timeout, retry_attempts, rate_limit)
VALUES (1, 'https://waha.legacy.example', 'legacy-key', NULL, 'legacy-secret', 45, NULL, 120);
"""


def check_legacy_conversion(target: Target) -> None:
    """The seed's "Migração do Schema Antigo", through `upgrade --owner`, and back."""
    problems = []
    with psycopg.connect(conninfo(target.url), autocommit=True) as db:
        db.execute(LEGACY_V1)
        before = db.execute("SELECT * FROM public.waha_config ORDER BY id").fetchall()
        owner = _new_user(db)
    try:
        migrate.upgrade(target.engine, owner=str(owner))
        with psycopg.connect(conninfo(target.url), autocommit=True) as db:
            converted = db.execute(
                "SELECT user_id, nome, api_url, api_key, webhook_url, webhook_secret, timeout, retry_attempts, rate_limit, "
                "prioridade, max_sessions FROM public.waha_servers"
            ).fetchall()
            wanted = [(owner, "Servidor Padrão", "https://waha.legacy.example", "legacy-key", None, "legacy-secret", 45, 3, 120, 10, 50)]
            if converted != wanted:
                problems.append(f"converted rows: expected {wanted!r}, got {converted!r}")
            if db.execute("SELECT pg_catalog.to_regclass('public.waha_config')").fetchone()[0] is not None:
                problems.append("public.waha_config still exists at head")
        migrate.downgrade(target.engine, revisions.previous(migrate.conversion_revision()))
        with psycopg.connect(conninfo(target.url), autocommit=True) as db:
            after = db.execute("SELECT * FROM public.waha_config ORDER BY id").fetchall()
        if after != before:
            problems.append(f"waha_config after the downgrade: expected {before!r}, got {after!r}")
    finally:
        target.reset()
        with psycopg.connect(conninfo(target.url), autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS public.waha_config")
            if db.execute("SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL").fetchone()[0]:
                db.execute("DELETE FROM auth.users WHERE id = %s", (owner,))
    if problems:
        raise CheckFailed("the legacy waha_config did not convert (or come back) as the seed says", problems)


# --- running them ---------------------------------------------------------------------------


Progress = Callable[[CheckResult], None]


def describe_error(error: BaseException) -> str:
    """An unexpected error of a check as one line, without any password: what kind, and PostgreSQL's own words."""
    original = error.orig if isinstance(error, sa.exc.DBAPIError) and error.orig is not None else error
    message = getattr(getattr(original, "diag", None), "message_primary", None)
    if not message:
        lines = [line.strip() for line in str(original).splitlines() if line.strip()]
        message = lines[0] if lines else "(no message)"
    kind = "database error" if isinstance(original, psycopg.Error) else f"{type(original).__name__}"
    sqlstate = getattr(original, "sqlstate", None)
    return mask_password(f"{kind}{f' {sqlstate}' if sqlstate else ''}: {message}")


def _run(name: str, results: list[CheckResult], progress: Progress | None, check: Callable, *args) -> None:
    started = time.perf_counter()
    try:
        note = check(*args)
        summary = note if isinstance(note, str) else ""
        details = note if isinstance(note, list) else []
        result = CheckResult(name, True, time.perf_counter() - started, summary, details)
    except CheckFailed as failure:
        result = CheckResult(name, False, time.perf_counter() - started, str(failure), failure.details)
    except Exception as error:  # one broken check is one FAIL line; the others (and the other target) still run
        result = CheckResult(name, False, time.perf_counter() - started, describe_error(error))
    results.append(result)
    if progress:
        progress(result)


def _run_on(target: Target, results: list[CheckResult], progress: Progress | None) -> None:
    prefix = f"[{target.label}] " if target.label else ""
    target.baseline = target.snapshot()
    before = len(results)
    _run(f"{prefix}upgrade an empty database to head", results, progress, check_upgrade_to_head, target)
    if not results[before].passed:
        return
    for name, check in (
        ("metadata (toolkit/lifecycle/model.py) equals the migrated database", check_metadata_matches),
        ("no drift from the recorded head catalog", check_no_drift),
        ("security: row security, search_path, anon, TRUNCATE, policies, indexed foreign keys", check_security_rules),
        ("the seed's examples and the selection rules", check_seed_examples),
        ("every revision upgrades, downgrades and upgrades again", check_revisions_up_down_up),
        ("downgrade to base removes every object it created", check_downgrade_to_base),
        ("offline SQL yields the schema of the online upgrade", check_offline_equals_online),
        ("sql/schema.sql is fresh and yields the same schema", check_schema_file),
        ("the legacy waha_config converts with an owner and comes back", check_legacy_conversion),
    ):
        _run(prefix + name, results, progress, check, target)
    try:
        target.reset()
    except Exception:  # noqa: BLE001 - the next target is another database; a failed check above says what broke
        pass


def verify(database_url: str | None = None, progress: Progress | None = None) -> Report:
    """Run every check; on a throwaway PostgreSQL when `database_url` is None. See the module doc."""
    started = time.perf_counter()
    results: list[CheckResult] = []
    if database_url is not None:
        refuse_unless_empty(database_url)
    _run("one head", results, progress, check_one_head)
    if database_url is None:
        from waha_db.checks.pgtemp import ThrowawayPostgres

        with ThrowawayPostgres() as server:
            version = _server_version(server.url("postgres"))
            description = f"throwaway PostgreSQL {version} on 127.0.0.1:{server.port}"
            plain = Target("postgres", server.url(server.create_database("verify_plain")))
            supabase_url = server.url(server.create_database("verify_supabase"))
            supabase = Target("supabase", supabase_url)
            with supabase.engine.begin() as connection:
                install_auth_stub(connection)
            try:
                for target in (plain, supabase):
                    _run_on(target, results, progress)
            finally:
                plain.engine.dispose()
                supabase.engine.dispose()
    else:
        url = parse_url(database_url)
        target = Target("", url)
        try:
            description = f"{display_url(url)} (PostgreSQL {_server_version(url)})"
            _run_on(target, results, progress)
        finally:
            target.engine.dispose()
    return Report(description, results, time.perf_counter() - started)


def refuse_unless_empty(database_url: str) -> None:
    """VerifyRefused when the database holds anything in schema public (verify would destroy it)."""
    url = parse_url(database_url)
    engine = connect_engine(url)
    try:
        with engine.connect() as connection:
            found = contents_of_public(connection)
    finally:
        engine.dispose()
    if found:
        raise VerifyRefused(
            f"{display_url(url)} is not empty (schema public holds {', '.join(found)}): verify migrates up and "
            "down and would destroy data; give it an empty database (CREATE DATABASE waha_verify), "
            "or no URL at all to use a throwaway PostgreSQL"
        )


def _server_version(url: sa.URL) -> str:
    engine = connect_engine(url)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SHOW server_version").scalar().split()[0]
    finally:
        engine.dispose()
