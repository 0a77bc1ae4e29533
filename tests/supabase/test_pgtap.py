"""The pgTAP tests the export writes into supabase/tests/, run with pg_prove as `supabase test db`
runs them: pgTAP in schema extensions, on Supabase's search_path `"$user", public, extensions`."""

from __future__ import annotations

import pytest

from tests.support.databases import run_sql
from tests.support.pushes import pushed
from tests.support.supabase_cli import ToolNotFound, find_pg_prove, install_pgtap, pg_prove
from waha_db.database import create_engine

pytestmark = pytest.mark.pgtap


@pytest.fixture(scope="session")
def pg_prove_installed():
    try:
        find_pg_prove()
    except ToolNotFound as missing:
        pytest.fail(str(missing), pytrace=False)


def with_pgtap(url):
    """pgTAP where `supabase test db` puts it; a missing extension fails the test with how to install it."""
    if not run_sql(url, "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'pgtap')")[0][0]:
        pytest.fail(
            "pgTAP is not installed on this PostgreSQL: apt-get install postgresql-15-pgtap (what .ci/run does)",
            pytrace=False,
        )
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            install_pgtap(connection)
    finally:
        engine.dispose()
    return url


def exported_tests(workdir):
    return sorted((workdir / "supabase" / "tests").glob("waha_*.sql"))


def test_pgtap_tests_pass_on_a_database_pushed_by_the_supabase_cli(
    pg_prove_installed, supabase_cli, export, fresh_database
):
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, export)
    done = pg_prove(with_pgtap(url), exported_tests(export))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All tests successful." in done.stdout and "Result: PASS" in done.stdout


def test_pgtap_tests_pass_on_a_database_upgraded_by_waha_db(pg_prove_installed, export, fresh_database):
    done = pg_prove(with_pgtap(fresh_database("supabase_head")), exported_tests(export))
    assert done.returncode == 0, done.stdout + done.stderr


def test_pgtap_tests_catch_row_security_switched_off(pg_prove_installed, export, fresh_database):
    url = with_pgtap(fresh_database("supabase_head"))
    run_sql(url, "ALTER TABLE public.waha_servers DISABLE ROW LEVEL SECURITY")
    done = pg_prove(url, exported_tests(export))
    assert done.returncode != 0
    assert 'Failed test 21: "row security is on for waha_servers"' in done.stdout
    assert 'Failed test 1: "Ana sees only her servers"' in done.stdout
    assert "Result: FAIL" in done.stdout
