"""`waha-db verify`: the CI command, on a given empty database, on a throwaway one, and its refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from xml.etree import ElementTree

import psycopg
from alembic.util import CommandError

from tests.support.databases import run_sql, server_version
from waha_db.checks import verify as verification
from waha_db.lifecycle import catalog, migrate


def test_verify_refuses_a_database_that_is_not_empty(waha_db, fresh_database):
    url = fresh_database("head")
    result = waha_db(url, "verify")
    assert result.exit_code == 1
    assert "is not empty (schema public holds " in result.output and "relation alembic_version" in result.output
    assert "would destroy data" in result.output
    assert run_sql(url, "SELECT count(*) FROM public.alembic_version") == [(1,)]


def test_verify_refuses_a_legacy_database(waha_db, legacy_url):
    result = waha_db(legacy_url, "verify")
    assert result.exit_code == 1
    assert "relation campaigns" in result.output
    assert run_sql(legacy_url, "SELECT count(*) FROM public.campaigns") == [(2,)]


def test_verify_on_an_empty_supabase_like_database_passes_and_leaves_it_empty(waha_db, fresh_database):
    url = fresh_database("supabase_empty")
    result = waha_db(url, "verify", "--json")
    report = json.loads(result.output)
    assert [check["name"] for check in report["checks"] if not check["passed"]] == []
    assert result.exit_code == 0
    assert len(report["checks"]) == 11
    assert run_sql(url, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == [(0,)]


def test_verify_reports_what_differs_when_a_check_fails(waha_db, fresh_database, tmp_path, monkeypatch):
    recorded = json.loads(catalog.HEAD_CATALOG.read_text())
    del recorded["indexes"]["public.waha_servers.waha_servers_ativo_idx"]
    tampered = tmp_path / "head_catalog.json"
    tampered.write_text(json.dumps(recorded))
    monkeypatch.setattr(catalog, "HEAD_CATALOG", tampered)
    result = waha_db(fresh_database("empty"), "verify")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == [next(line for line in lines if line.startswith("FAIL  no drift from the recorded head catalog"))]
    assert (
        "      - unexpected index public.waha_servers.waha_servers_ativo_idx: 'CREATE INDEX waha_servers_ativo_idx"
        in result.output
    )
    assert lines[-1].startswith("11 checks on") and "10 passed, 1 failed" in lines[-1]


def test_console_script_verifies_on_a_throwaway_postgresql_of_the_binaries_given_and_writes_junit(tmp_path, cluster):
    """--pg-bin wins over WAHA_DB_PG_BIN, and the last line names the version those binaries run."""
    junit = tmp_path / "verify.xml"
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["WAHA_DB_PG_BIN"] = str(tmp_path / "not-a-postgresql")
    script = os.path.join(os.path.dirname(sys.executable), "waha-db")
    binaries = cluster.server.bin_dir
    done = subprocess.run(
        [script, "verify", "--pg-bin", str(binaries), "--junit-xml", str(junit)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"waha-db verify: a throwaway PostgreSQL from {binaries}\n")
    assert "PASS  [postgres] upgrade an empty database to head" in done.stdout
    assert "PASS  [supabase] security: row security" in done.stdout
    last = done.stdout.splitlines()[-1]
    assert last.startswith(f"21 checks on throwaway PostgreSQL {cluster.server.version} on 127.0.0.1:")
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 21


def test_verify_pg_bin_pointing_nowhere_is_one_error(waha_db, tmp_path):
    result = waha_db(None, "verify", "--pg-bin", str(tmp_path))
    assert result.exit_code == 1
    assert (
        f"Error: the PostgreSQL bin directory {tmp_path} (--pg-bin or WAHA_DB_PG_BIN) holds no initdb and postgres"
        in result.output
    )


def test_verify_pg_bin_with_a_database_url_is_a_usage_error(waha_db, fresh_database, cluster):
    result = waha_db(fresh_database("empty"), "verify", "--pg-bin", str(cluster.server.bin_dir))
    assert result.exit_code == 2
    assert (
        "--pg-bin chooses the binaries of a throwaway server; with a database URL there is none to start"
        in result.output
    )


# --- a check that breaks unexpectedly ------------------------------------------------------------


def test_a_check_that_raises_a_database_error_is_one_fail_line_and_the_others_still_run(
    waha_db, fresh_database, monkeypatch
):
    """Broken offline SQL makes psycopg raise inside a check: verify reports it and goes on to the next checks."""
    monkeypatch.setattr(
        migrate, "offline_sql", lambda *args, **kwargs: "BEGIN;\nCREATE TABLE public.broken (;\nCOMMIT;\n"
    )
    result = waha_db(fresh_database("empty"), "verify")

    assert result.exit_code == 1
    lines = result.output.splitlines()
    failed = [line.split("  ")[1] for line in lines if line.startswith("FAIL")]
    assert failed == [
        "offline SQL yields the schema of the online upgrade",
        "sql/schema.sql is fresh and yields the same schema",
    ]
    offline = lines.index(next(line for line in lines if line.startswith("FAIL  offline SQL")))
    assert lines[offline + 1] == '      database error 42601: syntax error at or near ";"'
    assert any(line.startswith("PASS  the legacy waha_config converts") for line in lines)
    assert "Traceback" not in result.output
    assert lines[-1].startswith("11 checks on") and "9 passed, 2 failed" in lines[-1]


def test_a_check_that_raises_an_alembic_error_is_one_fail_line(waha_db, fresh_database, monkeypatch):
    def refuse(*args, **kwargs):
        raise CommandError("Can't locate revision identified by 'nope'")

    monkeypatch.setattr(migrate, "offline_sql", refuse)
    result = waha_db(fresh_database("empty"), "verify")

    assert result.exit_code == 1
    lines = result.output.splitlines()
    offline = lines.index(next(line for line in lines if line.startswith("FAIL  offline SQL")))
    assert lines[offline + 1] == "      CommandError: Can't locate revision identified by 'nope'"
    assert any(line.startswith("PASS  the legacy waha_config converts") for line in lines)


def test_error_of_a_check_is_reported_without_the_password():
    error = psycopg.OperationalError('connection to "postgresql://waha:s3cret@127.0.0.1:1/x" failed\nDETAIL: more')
    assert (
        verification.describe_error(error)
        == 'database error: connection to "postgresql://waha:***@127.0.0.1:1/x" failed'
    )


def test_installed_package_without_a_checkout_verifies_the_generated_full_schema(waha_db, fresh_database, monkeypatch):
    """From a wheel there is no sql/schema.sql to keep fresh; the generated schema is still applied and compared."""
    monkeypatch.setattr(migrate, "checkout_schema_file", lambda: None)
    result = waha_db(fresh_database("empty"), "verify")
    assert result.exit_code == 0, result.output
    assert "PASS  sql/schema.sql is fresh and yields the same schema" in result.output


def test_stale_schema_file_of_the_checkout_fails_verify(waha_db, fresh_database, tmp_path, monkeypatch):
    stale = tmp_path / "schema.sql"
    stale.write_text(migrate.full_schema_sql().replace("waha_servers_ativo_idx", "old_index_name"))
    monkeypatch.setattr(migrate, "checkout_schema_file", lambda: stale)
    result = waha_db(fresh_database("empty"), "verify")
    assert result.exit_code == 1
    assert "FAIL  sql/schema.sql is fresh and yields the same schema" in result.output
    assert "regenerate it with `waha-db sql`" in result.output


def test_verify_on_a_database_url_names_the_server_version(waha_db, fresh_database):
    url = fresh_database("empty")
    _, version = server_version(url)
    result = waha_db(url, "verify")
    assert result.exit_code == 0, result.output
    assert f"(PostgreSQL {version}): 11 passed, 0 failed" in result.output.splitlines()[-1]
