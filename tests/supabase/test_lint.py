"""`supabase db lint --level warning` (plpgsql_check on every function) on a database at head."""

from __future__ import annotations

import pytest

from tests.support.databases import run_sql

# plpgsql_check is a C extension built for one server version: Debian's for its 15, none
# for the version wheels (16, 18), so a run on those deselects these with -m "not plpgsql_check".
pytestmark = [pytest.mark.supabase_cli, pytest.mark.plpgsql_check]

BROKEN_FUNCTION = """
CREATE FUNCTION public.waha_broken_report() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE total integer;
BEGIN
    SELECT pg_catalog.count(*) INTO total FROM public.waha_no_such_table;
    RETURN total;
END
$$;
"""


def lint(supabase_cli, url, tmp_path):
    if not run_sql(url, "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'plpgsql_check')")[
        0
    ][0]:
        pytest.fail(
            "plpgsql_check is not installed on this PostgreSQL: apt-get install postgresql-15-plpgsql-check "
            "(what .ci/run does)",
            pytrace=False,
        )
    return supabase_cli.run("db", "lint", "--level", "warning", "--fail-on", "warning", workdir=tmp_path, url=url)


@pytest.mark.parametrize("kind", ["supabase_head", "legacy_head"])
def test_lint_reports_nothing_at_head(supabase_cli, fresh_database, tmp_path, kind):
    done = lint(supabase_cli, fresh_database(kind), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No schema errors found" in done.stderr + done.stdout
    assert "Linting schema: public" in done.stderr


def test_lint_reports_a_function_that_reads_a_missing_table(supabase_cli, fresh_database, tmp_path):
    url = fresh_database("supabase_head")
    run_sql(url, BROKEN_FUNCTION)
    done = lint(supabase_cli, url, tmp_path)
    assert done.returncode != 0
    assert '"function": "public.waha_broken_report"' in done.stdout
    assert 'relation \\"public.waha_no_such_table\\" does not exist' in done.stdout
