"""The offline script (`alembic upgrade head --sql`) applied by psql gives what the online upgrade gives."""

from __future__ import annotations

from tests.migrations.upgrade_support import CAMPAIGNS, OWNER, V1_FULL, V1_ROW, psql, schema_dump
from tests.support.databases import database_state, run_sql, servers, upgrade
from waha_db.lifecycle.migrate import offline_sql
from waha_db.lifecycle.model import HTTP_URL

LEGACY_SQL = (
    V1_FULL
    + V1_ROW
    + CAMPAIGNS
    + """
ALTER TABLE public.waha_config ADD COLUMN instance_name text DEFAULT 'default';
UPDATE public.waha_config SET created_at = '2025-01-02 03:04:05+00', updated_at = '2025-01-02 03:04:05+00';
"""
)


def test_offline_script_with_set_owner_converts_a_legacy_database_as_online(cluster, fresh_database):
    online, offline = fresh_database("empty"), fresh_database("empty")
    for url in (online, offline):
        run_sql(url, LEGACY_SQL)
    upgrade(online, owner=OWNER)
    script = offline_sql("head")
    assert "SET LOCAL waha.config_owner" not in script
    applied = psql(cluster, offline, "-c", f"SET waha.config_owner = '{OWNER}'", "-f", "-", input=script)
    assert applied.returncode == 0, applied.stderr
    assert schema_dump(cluster, offline) == schema_dump(cluster, online)
    assert servers(offline) == servers(online) and len(servers(offline)) == 1
    assert (
        database_state(offline)["rows"]["waha_legacy.waha_config_v1"]
        == database_state(online)["rows"]["waha_legacy.waha_config_v1"]
    )


def test_offline_script_generated_with_an_owner_carries_it(cluster, fresh_database):
    url = fresh_database("empty")
    run_sql(url, LEGACY_SQL)
    script = offline_sql("head", owner=OWNER)
    assert f"SET LOCAL waha.config_owner = '{OWNER}';" in script
    applied = psql(cluster, url, input=script)
    assert applied.returncode == 0, applied.stderr
    assert [server["user_id"] for server in servers(url)] == [OWNER]


def test_offline_script_without_owner_stops_before_changing_anything(cluster, fresh_database):
    url = fresh_database("empty")
    run_sql(url, LEGACY_SQL)
    before = database_state(url)
    applied = psql(cluster, url, input=offline_sql("head"))
    assert applied.returncode != 0
    assert (
        "ERROR:  public.waha_config holds 1 WAHA server(s) to convert (https://waha.legacy.example) and no owner was given"
        in applied.stderr
    )
    assert "SET waha.config_owner = 'UUID'; in psql before an offline script" in applied.stderr
    assert database_state(url) == before


def test_offline_script_refuses_a_malformed_owner_set_in_psql(cluster, fresh_database):
    url = fresh_database("empty")
    run_sql(url, LEGACY_SQL)
    before = database_state(url)
    applied = psql(cluster, url, "-c", "SET waha.config_owner = 'alice'", "-f", "-", input=offline_sql("head"))
    assert applied.returncode != 0
    assert "ERROR:  the owner of the legacy WAHA server, 'alice', is not a UUID" in applied.stderr
    assert database_state(url) == before


def test_offline_script_keeps_regex_and_json_text_intact():
    """text() would turn `:word` into a NULL bind parameter offline, silently."""
    script = offline_sql("head")
    assert HTTP_URL in script
    assert "'^[A-Za-z0-9_-]{1,54}$'" in script
    assert "%%" not in script
