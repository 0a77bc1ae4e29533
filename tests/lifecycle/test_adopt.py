"""Adopting hand-made V2.1 databases (tables created from the seed document, no alembic_version)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.migrations.upgrade_support import CAMPAIGNS, OWNER, V1_FULL, V1_ROW
from tests.support.databases import database_state, run_sql, upgrade
from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import adopt as adoption
from waha_db.lifecycle import migrate, state
from waha_db.lifecycle.catalog import catalog_snapshot, waha_objects
from waha_db.lifecycle.migrate import HandMadeSchema
from waha_db.lifecycle.model import include_object, metadata
from waha_db.lifecycle.revisions import head as head_revision

USER = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"

# As a person would type it from the seed's tables: plain columns, TIMESTAMP, the seed's UNIQUEs.
SEED_TABLES = """
CREATE TABLE public.waha_servers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    nome VARCHAR(255) NOT NULL,
    api_url TEXT NOT NULL,
    api_key TEXT,
    descricao TEXT,
    ativo BOOLEAN DEFAULT true,
    webhook_url TEXT,
    webhook_secret TEXT,
    timeout INTEGER DEFAULT 30,
    retry_attempts INTEGER DEFAULT 3,
    rate_limit INTEGER DEFAULT 100,
    prioridade INTEGER DEFAULT 0,
    max_sessions INTEGER DEFAULT 50,
    sessions_ativas INTEGER DEFAULT 0,
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW(),
    UNIQUE (user_id, api_url)
);
CREATE TABLE public.waha_sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    waha_server_id UUID REFERENCES public.waha_servers(id),
    session_name VARCHAR(255) NOT NULL,
    status VARCHAR(50) DEFAULT 'STOPPED',
    phone_number VARCHAR(20),
    profile_name VARCHAR(255),
    qr_code TEXT,
    last_connected_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT NOW(),
    updated_at TIMESTAMP DEFAULT NOW(),
    UNIQUE (waha_server_id, session_name)
);
CREATE INDEX idx_waha_servers_user_id ON public.waha_servers(user_id);
CREATE FUNCTION get_available_waha_server(user_uuid UUID) RETURNS SETOF waha_servers LANGUAGE sql AS $$
    SELECT * FROM waha_servers WHERE user_id = user_uuid AND ativo AND sessions_ativas < max_sessions
    ORDER BY prioridade DESC, (sessions_ativas::float / max_sessions) LIMIT 1
$$;
GRANT ALL ON public.waha_servers TO PUBLIC;
"""
SEED_ROWS = f"""
INSERT INTO public.waha_servers VALUES
    ('aaaaaaaa-0000-4000-8000-000000000001', '{USER}', 'Principal', 'https://waha-prod.example', 'key1',
     'Servidor principal', true, NULL, NULL, 30, 3, 100, 10, 100, 1, '2025-01-01 10:00', '2025-01-02 10:00'),
    ('aaaaaaaa-0000-4000-8000-000000000002', '{USER}', 'Backup', 'https://waha-backup.example', 'key2',
     'Servidor de backup', true, NULL, NULL, NULL, NULL, NULL, 5, 50, 0, NOW(), NOW());
INSERT INTO public.waha_sessions (id, user_id, waha_server_id, session_name, status)
VALUES ('bbbbbbbb-0000-4000-8000-000000000001', '{USER}', 'aaaaaaaa-0000-4000-8000-000000000001', 'sessao-cliente-001', 'connecting');
"""


def hand_made(fresh_database, *extra: str, kind: str = "empty"):
    url = fresh_database(kind)
    run_sql(url, SEED_TABLES + SEED_ROWS + CAMPAIGNS + "".join(extra))
    return url


def plan_of(url, owner=None):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return adoption.plan_adoption(connection, migrate.parse_owner(owner))
    finally:
        engine.dispose()


def adopt(url, owner=None):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return adoption.adopt(connection, migrate.parse_owner(owner))
    finally:
        engine.dispose()


def waha_snapshot(url) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return waha_objects(catalog_snapshot(connection))
    finally:
        engine.dispose()


def state_of(url):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return state.database_state(connection)
    finally:
        engine.dispose()


def test_upgrade_head_stops_on_a_hand_made_schema_and_points_to_adopt(fresh_database):
    url = hand_made(fresh_database)
    before = database_state(url)
    with pytest.raises(HandMadeSchema) as refused:
        upgrade(url)
    assert str(refused.value).startswith("this database holds a hand-made V2.1 schema")
    assert "`waha-db adopt`" in str(refused.value) and "relation already exists" in str(refused.value)
    assert database_state(url) == before


def test_seed_database_is_adoptable_and_the_plan_says_what_it_will_do(fresh_database):
    url = hand_made(fresh_database)
    plan = plan_of(url)
    assert plan.problems == []
    assert (
        "change waha_servers.created_at from timestamp without time zone to timestamp with time zone (values read in the session's time zone)"
        in plan.actions
    )
    assert "1 row(s) of waha_servers: NULL timeout becomes the default 30" in plan.actions
    assert "rebuild waha_servers in the V2.1 shape and copy its 2 row(s)" in plan.actions
    assert f"record revision {head_revision()} in alembic_version" in plan.actions
    assert state_of(url) == state.DatabaseState(state.HAND_MADE)


def test_adoption_keeps_every_row_and_leaves_no_drift(fresh_database):
    url = hand_made(fresh_database)
    adopt(url)
    assert waha_snapshot(url) == waha_snapshot(fresh_database("head"))
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": include_object, "compare_type": True})
        assert compare_metadata(context, metadata) == []
    engine.dispose()
    assert run_sql(
        url,
        "SELECT nome, timeout, prioridade, max_sessions, sessions_ativas, created_at::text FROM public.waha_servers ORDER BY nome",
    ) == [
        (
            "Backup",
            30,
            5,
            50,
            0,
            run_sql(url, "SELECT created_at::text FROM public.waha_servers WHERE nome = 'Backup'")[0][0],
        ),
        ("Principal", 30, 10, 100, 1, "2025-01-01 10:00:00+00"),
    ]
    assert run_sql(url, "SELECT session_name, status FROM public.waha_sessions") == [
        ("sessao-cliente-001", "connecting")
    ]
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert run_sql(url, "SELECT to_regnamespace('waha_adopt')") == [(None,)]
    assert state_of(url).at_head


def test_adopted_database_keeps_the_v21_guarantees(fresh_database):
    url = hand_made(fresh_database)
    adopt(url)
    with psycopg.connect(conninfo(url), autocommit=True) as db:
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(
                f"INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES ('{USER}', 'x', 'waha.example')"
            )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            db.execute(
                f"INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) "
                f"VALUES ('{OTHER}', 'aaaaaaaa-0000-4000-8000-000000000001', 'stranger')"
            )
        picked = db.execute(f"SELECT nome FROM public.get_available_waha_server('{USER}')").fetchall()
        assert picked == [("Principal",)]
        with db.transaction():
            db.execute("SET LOCAL ROLE authenticated")
            db.execute("SELECT set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{OTHER}"}}',))
            assert db.execute("SELECT count(*) FROM public.waha_servers").fetchone()[0] == 0
        assert db.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'public.waha_servers'::regclass").fetchone()[
            0
        ]


def test_adoption_refuses_with_the_exact_problems_and_touches_nothing(fresh_database):
    url = fresh_database("empty")
    run_sql(url, SEED_TABLES.replace("prioridade INTEGER DEFAULT 0", "prioridade TEXT DEFAULT '0'") + CAMPAIGNS)
    before = database_state(url)
    with pytest.raises(adoption.AdoptionRefused) as refused:
        adopt(url)
    assert refused.value.problems == ["waha_servers.prioridade is text, expected integer"]
    assert "waha-db adopt" in str(refused.value) and "nothing was changed" in str(refused.value)
    assert database_state(url) == before


def test_adoption_lists_every_data_problem(fresh_database):
    url = hand_made(
        fresh_database,
        f"""
        ALTER TABLE public.waha_servers DROP CONSTRAINT waha_servers_user_id_api_url_key;
        INSERT INTO public.waha_servers (id, user_id, nome, api_url, prioridade) VALUES
            ('aaaaaaaa-0000-4000-8000-000000000003', '{USER}', 'Dup', 'https://waha-prod.example', 0),
            ('aaaaaaaa-0000-4000-8000-000000000004', '{OTHER}', 'Other', 'https://other.example', 42);
        INSERT INTO public.waha_sessions (id, user_id, waha_server_id, session_name)
        VALUES ('bbbbbbbb-0000-4000-8000-000000000002', '{USER}', 'aaaaaaaa-0000-4000-8000-000000000004', 'bad name!');
    """,
    )
    before = database_state(url)
    plan = plan_of(url)
    assert plan.problems == [
        "1 row(s) of waha_servers violate waha_servers_prioridade_range_check "
        "CHECK (((prioridade >= 0) AND (prioridade <= 10))): id aaaaaaaa-0000-4000-8000-000000000004",
        f"2 rows of waha_servers share (user_id, api_url) = ({USER},https://waha-prod.example)",
        "1 row(s) of waha_sessions violate waha_sessions_session_name_waha_rule_check "
        "CHECK (((session_name)::text ~ '^[A-Za-z0-9_-]{1,54}$'::text)): id bbbbbbbb-0000-4000-8000-000000000002",
        f"waha_sessions id=bbbbbbbb-0000-4000-8000-000000000002 of user {USER} "
        f"is on server aaaaaaaa-0000-4000-8000-000000000004 of another user ({OTHER})",
    ]
    with pytest.raises(adoption.AdoptionRefused):
        adopt(url)
    assert database_state(url) == before


def test_adoption_refuses_extra_columns_and_dependent_views(fresh_database):
    url = hand_made(
        fresh_database,
        """
        ALTER TABLE public.waha_servers ADD COLUMN region text;
        CREATE VIEW public.active_servers AS SELECT id, nome FROM public.waha_servers WHERE ativo;
    """,
    )
    assert plan_of(url).problems == [
        "waha_servers.region (text) is not a V2.1 column: adoption would lose its values; drop it or move them elsewhere first",
        "view active_servers depends on waha_servers: adoption rebuilds the table; drop it first and recreate it after adoption",
    ]


# waha_config as the seed's manual conversion (INSERT ... SELECT FROM waha_config) found it: Principal's values.
PRINCIPAL_IN_WAHA_CONFIG = """
INSERT INTO public.waha_config (id, api_url, api_key, timeout, retry_attempts, rate_limit)
VALUES (1, 'https://waha-prod.example', 'key1', 30, 3, 100);
"""


def test_adoption_with_the_legacy_table_still_there_infers_the_owner(fresh_database):
    """The seed's manual conversion (INSERT ... SELECT FROM waha_config) left waha_config beside the new tables."""
    url = hand_made(fresh_database, V1_FULL, PRINCIPAL_IN_WAHA_CONFIG)
    plan = adopt(url)
    assert plan.owner == uuid.UUID(USER)
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers") == [(2,)]
    assert run_sql(url, "SELECT count(*) FROM waha_legacy.waha_config_v1") == [(1,)]


def test_adoption_lists_what_waha_config_says_that_its_converted_server_does_not(fresh_database):
    url = hand_made(fresh_database, V1_FULL, PRINCIPAL_IN_WAHA_CONFIG.replace("'key1'", "'rotated-key'"))
    (problem,) = plan_of(url).problems
    assert problem.splitlines()[1] == (
        f'  - waha_config id=1 differs from server "Principal" (aaaaaaaa-0000-4000-8000-000000000001) of user {USER}, '
        "which it was converted into before: api_key (differs; secrets are not shown)"
    )
    assert "rotated-key" not in problem and "key1" not in problem
    assert "keep waha_config's values: UPDATE public.waha_servers" in problem


def test_adoption_needs_an_owner_for_a_legacy_server_not_yet_converted(fresh_database):
    url = hand_made(fresh_database, V1_FULL, V1_ROW)
    assert plan_of(url).problems == [
        "waha_config still holds a WAHA server (https://waha.legacy.example) and no owner was given: "
        "pass the id of its user (`waha-db adopt --owner UUID`)"
    ]
    adopt(url, owner=OWNER)
    assert run_sql(url, "SELECT user_id::text FROM public.waha_servers WHERE nome = 'Servidor Padrão'") == [(OWNER,)]


def test_only_one_hand_made_table_is_completed_with_the_other(fresh_database):
    url = fresh_database("empty")
    run_sql(
        url,
        SEED_TABLES.split("CREATE TABLE public.waha_sessions")[0]
        + SEED_ROWS.split("INSERT INTO public.waha_sessions")[0],
    )
    adopt(url)
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers") == [(2,)]
    assert run_sql(url, "SELECT count(*) FROM public.waha_sessions") == [(0,)]


def test_state_reader_tells_empty_legacy_and_managed_databases_apart(fresh_database):
    empty = fresh_database("empty")
    assert state_of(empty).kind == state.EMPTY
    legacy = fresh_database("empty")
    run_sql(legacy, V1_FULL + V1_ROW)
    assert (state_of(legacy).kind, state_of(legacy).legacy_convertible_rows) == (state.LEGACY, 1)
    upgrade(legacy, "0004", owner=OWNER)
    partial = state_of(legacy)
    assert (partial.kind, partial.revision, partial.pending[0]) == (state.MANAGED, "0004", "0005")
    assert state_of(fresh_database("head")).at_head
