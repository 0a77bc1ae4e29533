"""Converting the legacy singleton waha_config, on real V1 databases of every variant found in the wild."""

from __future__ import annotations

import pytest

from tests.migrations.upgrade_support import CAMPAIGNS, OWNER, V1_FULL, V1_ROW, run_alembic
from tests.support.databases import database_state, downgrade, run_sql, servers, upgrade
from waha_db.lifecycle.migrate import LegacyConversionRefused
from waha_db.lifecycle.revisions import head as head_revision


def legacy(fresh_database, *sql: str):
    """A legacy V1 database made of `sql` (a variant of waha_config), beside the application's own table."""
    return fresh_database("empty", *sql, CAMPAIGNS)


def converted_id(url) -> str:
    return run_sql(url, "SELECT md5('waha-db legacy waha_config 1')::uuid::text")[0][0]


def the_server(url) -> dict:
    rows = servers(url)
    assert len(rows) == 1, rows
    return rows[0]


def test_full_v1_row_becomes_the_owners_default_server(fresh_database):
    url = legacy(fresh_database, V1_FULL, V1_ROW)
    upgrade(url, owner=OWNER)
    assert the_server(url) == {
        "id": converted_id(url),
        "user_id": OWNER,
        "nome": "Servidor Padrão",
        "api_url": "https://waha.legacy.example",
        "api_key": "legacy-key",
        "descricao": None,
        "ativo": True,
        "webhook_url": "https://app.example/webhook",
        "webhook_secret": "legacy-secret",
        "timeout": 45,
        "retry_attempts": 5,
        "rate_limit": 120,
        "prioridade": 10,
        "max_sessions": 50,
        "sessions_ativas": 0,
    }
    assert run_sql(url, "SELECT to_regclass('public.waha_config')")[0][0] is None


def test_v1_without_webhook_columns_converts_with_no_webhook(fresh_database):
    url = legacy(
        fresh_database,
        """
        CREATE TABLE public.waha_config (id integer PRIMARY KEY CHECK (id = 1), api_url text, api_key text,
            timeout integer, retry_attempts integer, rate_limit integer);
        INSERT INTO public.waha_config VALUES (1, 'http://10.0.0.5:3000', 'k', 20, 2, 60);
    """,
    )
    upgrade(url, owner=OWNER)
    server = the_server(url)
    assert (server["api_url"], server["webhook_url"], server["webhook_secret"], server["timeout"]) == (
        "http://10.0.0.5:3000",
        None,
        None,
        20,
    )


def test_v1_without_rate_limit_takes_the_default(fresh_database):
    url = legacy(
        fresh_database,
        """
        CREATE TABLE public.waha_config (id integer PRIMARY KEY, api_url text, api_key text, webhook_url text,
            webhook_secret text, timeout integer, retry_attempts integer);
        INSERT INTO public.waha_config VALUES (1, 'https://waha.example', 'k', NULL, NULL, 10, 1);
    """,
    )
    upgrade(url, owner=OWNER)
    assert (the_server(url)["rate_limit"], the_server(url)["timeout"]) == (100, 10)


def test_nulls_take_the_v21_defaults(fresh_database):
    url = legacy(
        fresh_database, V1_FULL, "INSERT INTO public.waha_config (id, api_url) VALUES (1, ' https://waha.example ')"
    )
    upgrade(url, owner=OWNER)
    server = the_server(url)
    assert (
        server["api_url"],
        server["api_key"],
        server["timeout"],
        server["retry_attempts"],
        server["rate_limit"],
    ) == ("https://waha.example", None, 30, 3, 100)


def test_extra_columns_are_ignored_and_kept_for_the_downgrade(fresh_database):
    url = legacy(
        fresh_database,
        V1_FULL,
        V1_ROW,
        """
        ALTER TABLE public.waha_config ADD COLUMN instance_name text DEFAULT 'default', ADD COLUMN debug boolean;
        UPDATE public.waha_config SET debug = true;
    """,
    )
    before = database_state(url)
    upgrade(url, owner=OWNER)
    assert the_server(url)["api_key"] == "legacy-key"
    assert run_sql(url, "SELECT instance_name, debug FROM waha_legacy.waha_config_v1") == [("default", True)]
    downgrade(url, "0004")
    after = database_state(url)
    for key in ("public.waha_config",):
        assert after["rows"][key] == before["rows"][key]
        assert after["catalog"]["columns"][key] == before["catalog"]["columns"][key]
    assert {k: v for k, v in after["catalog"]["constraints"].items() if ".waha_config." in k} == {
        k: v for k, v in before["catalog"]["constraints"].items() if ".waha_config." in k
    }


@pytest.mark.parametrize(
    "rows",
    [
        "",
        "INSERT INTO public.waha_config (id) VALUES (1)",
        "INSERT INTO public.waha_config (id, api_url, api_key) VALUES (1, '   ', 'orphan-key')",
    ],
    ids=["empty table", "row without api_url", "blank api_url"],
)
def test_nothing_to_convert_needs_no_owner_and_keeps_the_table(fresh_database, rows, caplog):
    url = legacy(fresh_database, V1_FULL, rows)
    before = database_state(url)["rows"]["public.waha_config"]
    with caplog.at_level("INFO", logger="alembic.env"):
        upgrade(url)
    assert servers(url) == []
    assert "waha_config holds no row with an api_url: nothing to convert" in caplog.messages
    assert database_state(url)["rows"]["waha_legacy.waha_config_v1"] == before


def test_refuses_without_owner_and_says_how_to_give_one(fresh_database):
    url = legacy(fresh_database, V1_FULL, V1_ROW)
    before = database_state(url)
    with pytest.raises(LegacyConversionRefused) as refused:
        upgrade(url)
    message = str(refused.value)
    assert message.startswith(
        "public.waha_config holds 1 WAHA server(s) to convert (https://waha.legacy.example) and no owner was given"
    )
    assert "waha-db upgrade --owner UUID" in message and "alembic -x owner=UUID upgrade head" in message
    assert "SET waha.config_owner" in message and "Nothing was changed" in message
    assert database_state(url) == before


def test_refuses_an_owner_that_is_not_a_uuid(fresh_database):
    url = legacy(fresh_database, V1_FULL, V1_ROW)
    before = database_state(url)
    with pytest.raises(LegacyConversionRefused, match=r"the owner 'admin@example.com' is not a UUID"):
        upgrade(url, owner="admin@example.com")
    assert database_state(url) == before


def test_refuses_an_owner_unknown_to_supabase_auth(fresh_database):
    url = fresh_database("supabase_empty")
    run_sql(url, V1_FULL + V1_ROW)
    before = database_state(url)
    with pytest.raises(
        LegacyConversionRefused, match=f"the owner of the legacy WAHA server, {OWNER}, is not a user in auth.users"
    ):
        upgrade(url, owner=OWNER)
    assert database_state(url) == before
    run_sql(url, "INSERT INTO auth.users (id) VALUES (%s)", (OWNER,))
    upgrade(url, owner=OWNER)
    assert the_server(url)["user_id"] == OWNER


def test_refuses_invalid_legacy_values_listing_each(fresh_database):
    url = legacy(
        fresh_database,
        V1_FULL,
        """
        INSERT INTO public.waha_config (id, api_url, webhook_url, timeout, retry_attempts, rate_limit)
        VALUES (1, 'waha.example.com:3000', 'ftp://hooks.example', 0, -1, 100);
    """,
    )
    before = database_state(url)
    with pytest.raises(LegacyConversionRefused) as refused:
        upgrade(url, owner=OWNER)
    assert str(refused.value).splitlines()[:5] == [
        "waha_config holds values the V2.1 schema refuses:",
        "  - waha_config id=1: api_url 'waha.example.com:3000' is not an http:// or https:// URL",
        "  - waha_config id=1: webhook_url 'ftp://hooks.example' is not an http:// or https:// URL (set it to NULL if there is no webhook)",
        "  - waha_config id=1: timeout 0 is not positive (V2.1 wants > 0)",
        "  - waha_config id=1: retry_attempts -1 is negative (V2.1 wants >= 0)",
    ]
    assert "UPDATE public.waha_config SET api_url" in str(refused.value)
    assert database_state(url) == before


def test_legacy_column_of_another_type_is_reported_not_cast(fresh_database):
    url = legacy(
        fresh_database,
        """
        CREATE TABLE public.waha_config (id integer PRIMARY KEY, api_url text, timeout text);
        INSERT INTO public.waha_config VALUES (1, 'https://waha.example', '30s');
    """,
    )
    with pytest.raises(LegacyConversionRefused, match=r"waha_config id=1: timeout '30s' is not a whole number"):
        upgrade(url, owner=OWNER)


def test_upgrade_downgrade_upgrade_leaves_one_server(fresh_database):
    url = legacy(fresh_database, V1_FULL, V1_ROW)
    before = database_state(url)["rows"]["public.waha_config"]
    upgrade(url, owner=OWNER)
    downgrade(url, "0004")
    assert database_state(url)["rows"]["public.waha_config"] == before
    upgrade(url, owner=OWNER)
    assert len(servers(url)) == 1
    downgrade(url, "base")
    assert database_state(url)["rows"]["public.waha_config"] == before
    assert run_sql(url, "SELECT to_regclass('public.waha_servers'), to_regnamespace('waha_legacy')") == [(None, None)]


def test_fresh_install_downgrade_drops_the_table_it_created(fresh_database):
    url = fresh_database("empty")
    upgrade(url)
    assert run_sql(url, "SELECT to_regclass('public.waha_config')") == [(None,)]
    downgrade(url, "0004")
    assert run_sql(url, "SELECT obj_description('public.waha_config'::regclass)")[0][0].startswith("waha-db 0001")
    downgrade(url, "base")
    assert run_sql(url, "SELECT to_regclass('public.waha_config')") == [(None,)]


def test_owner_given_to_the_alembic_command_with_x_owner(fresh_database):
    url = legacy(fresh_database, V1_FULL, V1_ROW)
    done = run_alembic(url, "upgrade", "head")
    assert done.returncode != 0
    assert (
        "FAILED: public.waha_config holds 1 WAHA server(s) to convert (https://waha.legacy.example) and no owner was given"
        in done.stdout + done.stderr
    )
    assert "Traceback" not in done.stdout + done.stderr
    done = run_alembic(url, "-x", f"owner={OWNER}", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert f'is WAHA server "Servidor Padrão" of user {OWNER} (converted now)' in done.stderr
    assert the_server(url)["user_id"] == OWNER
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
