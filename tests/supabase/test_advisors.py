"""Supabase's own advisors (`supabase db advisors --type all`: the dashboard's Security and Performance
Advisor) on the WAHA schema: nothing at level WARN or above, on a Supabase-like database upgraded by
waha-db and on one pushed with the exported files. Before revision 0011 they reported alembic_version
as a public table without row security (level ERROR); the last test shows they still see that."""

from __future__ import annotations

import json

import pytest

from tests.support.databases import upgrade
from tests.support.pushes import pushed

pytestmark = pytest.mark.supabase_cli

# What an empty database at head may show, at level INFO only: indexes no query has used yet, and
# alembic_version's row security without a policy (no API role holds a privilege on it: on purpose).
EXPECTED_INFO = {"unused_index", "rls_enabled_no_policy"}


def advisors(supabase_cli, url, workdir) -> tuple[int, list[dict]]:
    """`supabase db advisors --type all --level info --fail-on warn`: its exit status, and every finding."""
    done = supabase_cli.run(
        "db", "advisors", "--type", "all", "--level", "info", "--fail-on", "warn", workdir=workdir, remote=url
    )
    start = done.stdout.find("[")
    assert start >= 0 or "No issues found" in done.stdout + done.stderr, done.stdout + done.stderr
    findings = json.loads(done.stdout[start:]) if start >= 0 else []
    return done.returncode, findings


def described(findings: list[dict]) -> list[str]:
    return sorted(f"{item['level']} {item['name']} {item['metadata'].get('name')}" for item in findings)


def assert_nothing_to_warn_about(status: int, findings: list[dict]) -> None:
    assert status == 0, described(findings)
    assert {item["level"] for item in findings} <= {"INFO"}, described(findings)
    assert {item["name"] for item in findings} <= EXPECTED_INFO, described(findings)
    assert [item["metadata"]["name"] for item in findings if item["name"] == "rls_enabled_no_policy"] == [
        "alembic_version"
    ]


def test_advisors_find_nothing_to_warn_about_on_a_database_upgraded_by_waha_db(supabase_cli, fresh_database, tmp_path):
    assert_nothing_to_warn_about(*advisors(supabase_cli, fresh_database("supabase_head"), tmp_path))


def test_advisors_find_nothing_to_warn_about_on_a_database_pushed_with_the_export(
    supabase_cli, export, fresh_database, tmp_path
):
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, export)
    assert_nothing_to_warn_about(*advisors(supabase_cli, url, tmp_path))


def test_advisors_report_alembic_version_open_to_the_api_as_it_was_before_revision_0011(
    supabase_cli, fresh_database, tmp_path
):
    url = fresh_database("supabase_empty")
    upgrade(url, "0010")
    status, findings = advisors(supabase_cli, url, tmp_path)
    assert status != 0
    assert [(item["level"], item["detail"]) for item in findings if item["name"] == "rls_disabled_in_public"] == [
        ("ERROR", "Table `public.alembic_version` is public, but RLS has not been enabled.")
    ]
