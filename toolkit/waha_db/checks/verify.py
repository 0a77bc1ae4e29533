"""The CI check of the migrations: `waha-db verify`.

Runs on a throwaway PostgreSQL when no database is given (so it works on a fresh
machine with nothing configured), there on two databases: plain PostgreSQL, and one
shaped like Supabase (auth.users, anon/authenticated/service_role and Supabase's
default privileges, see waha_db.checks.supabase). Given a database URL, it runs on that
database, which must be empty (nothing in schema public: a fresh Supabase project
qualifies), and leaves it empty again; the roles authenticated and service_role, if
the migrations created them, stay (roles are never dropped).

The checks are those of waha_db.checks.suite, the same functions the tests run;
this module runs them in order on each database and reports one line each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import psycopg
import sqlalchemy as sa

from waha_db.checks import suite
from waha_db.checks.suite_database import CheckFailed
from waha_db.checks.supabase import install_auth_stub
from waha_db.database import (
    connect_engine,
    create_engine,
    database_message,
    display_url,
    driver_error,
    server_version,
)
from waha_db.errors import UserError


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

    def as_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "checks": [
                {
                    "name": c.name,
                    "passed": c.passed,
                    "seconds": round(c.seconds, 3),
                    "summary": c.summary,
                    "details": c.details,
                }
                for c in self.checks
            ],
        }

    def junit_xml(self) -> str:
        failures = sum(not check.passed for check in self.checks)
        suite = ElementTree.Element(
            "testsuite",
            name="waha-db verify",
            tests=str(len(self.checks)),
            failures=str(failures),
            errors="0",
            time=f"{self.seconds:.3f}",
        )
        for check in self.checks:
            case = ElementTree.SubElement(
                suite, "testcase", classname="waha-db.verify", name=check.name, time=f"{check.seconds:.3f}"
            )
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


# --- running them ---------------------------------------------------------------------------


Progress = Callable[[CheckResult], None]


def describe_error(error: BaseException) -> str:
    """An unexpected error of a check as one line, without any password: what kind, and PostgreSQL's own words."""
    original = driver_error(error)
    kind = "database error" if isinstance(original, psycopg.Error) else type(original).__name__
    sqlstate = getattr(original, "sqlstate", None)
    return f"{kind}{f' {sqlstate}' if sqlstate else ''}: {database_message(error)}"


def _run(
    name: str, results: list[CheckResult], progress: Progress | None, check: Callable[..., object], *args: object
) -> None:
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


def _run_on(database: suite.Database, results: list[CheckResult], progress: Progress | None) -> None:
    prefix = f"[{database.label}] " if database.label else ""
    before = len(results)
    for name, check in suite.CHECKS:
        _run(prefix + name, results, progress, check, database)
        if len(results) == before + 1 and not results[before].passed:
            return  # the upgrade to head failed: every other check would fail with it
    try:
        database.reset()
    except Exception:  # noqa: BLE001 - the next database is another one; a failed check above says what broke
        pass


def verify(url: sa.URL | None = None, progress: Progress | None = None, pg_bin: str | Path | None = None) -> Report:
    """Run every check; on a throwaway PostgreSQL when `url` is None, from the server binaries in
    `pg_bin` (default: see waha_db.checks.pgtemp.find_server_binaries). See the module doc."""
    started = time.perf_counter()
    results: list[CheckResult] = []
    if url is not None:
        refuse_unless_empty(url)
    _run("one head", results, progress, suite.check_one_head)
    if url is None:
        from waha_db.checks.pgtemp import ThrowawayPostgres

        with ThrowawayPostgres(pg_bin) as server:
            description = f"throwaway PostgreSQL {server.version} on 127.0.0.1:{server.port}"
            plain = suite.Database(server.url(server.create_database("verify_plain")), "postgres")
            supabase_url = server.url(server.create_database("verify_supabase"))
            engine = create_engine(supabase_url)
            with engine.begin() as connection:
                install_auth_stub(connection)
            engine.dispose()
            supabase = suite.Database(supabase_url, "supabase")
            try:
                for target in (plain, supabase):
                    _run_on(target, results, progress)
            finally:
                plain.close()
                supabase.close()
    else:
        database = suite.Database(url)
        try:
            description = f"{display_url(url)} (PostgreSQL {_server_version(url)})"
            _run_on(database, results, progress)
        finally:
            database.close()
    return Report(description, results, time.perf_counter() - started)


def refuse_unless_empty(url: sa.URL) -> None:
    """VerifyRefused when the database holds anything in schema public (verify would destroy it)."""
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
            return server_version(connection)[1]
    finally:
        engine.dispose()
