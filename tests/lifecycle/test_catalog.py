"""Snapshot comparison (pure), and drift of real databases from the recorded head catalog."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from tests.support.databases import run_sql, server_version
from waha_db.database import create_engine
from waha_db.lifecycle import catalog

HEAD_TABLE = {
    "public.waha_servers": [
        "id uuid NOT NULL",
        "nome character varying(255) NOT NULL",
        "ativo boolean NOT NULL DEFAULT true",
    ]
}


def test_equal_snapshots_have_no_difference():
    assert catalog.diff_snapshots({"columns": HEAD_TABLE}, {"columns": HEAD_TABLE}) == []


def test_missing_changed_and_unexpected_columns_are_named():
    found = {"public.waha_servers": ["id uuid NOT NULL", "nome text NOT NULL", "extra integer"]}
    assert catalog.diff_snapshots(
        {"columns": HEAD_TABLE}, {"columns": found}, expected_label="head has", actual_label="database has"
    ) == [
        "missing column public.waha_servers.ativo (ativo boolean NOT NULL DEFAULT true)",
        "unexpected column public.waha_servers.extra (extra integer)",
        "changed column public.waha_servers.nome: head has 'nome character varying(255) NOT NULL', database has 'nome text NOT NULL'",
    ]


def test_column_order_matters_because_the_seed_inserts_positionally():
    reordered = {"public.waha_servers": list(reversed(HEAD_TABLE["public.waha_servers"]))}
    assert catalog.diff_snapshots({"columns": HEAD_TABLE}, {"columns": reordered}) == [
        "column order of public.waha_servers: expected id, nome, ativo; found ativo, nome, id"
    ]


def test_a_changed_function_shows_its_first_differing_line():
    body = "CREATE FUNCTION f()\nBEGIN\n  RETURN 1;\nEND"
    lines = catalog.diff_snapshots(
        {"functions": {"public.f()": body}}, {"functions": {"public.f()": body.replace("1", "2")}}
    )
    assert lines == ["changed function public.f(): line 3: expected 'RETURN 1;', found 'RETURN 2;'"]


def test_a_change_of_whitespace_alone_is_drawn_so_the_two_sides_differ():
    body = "CREATE FUNCTION f()\nDECLARE\n  n int;\nBEGIN\nEND"
    lines = catalog.diff_snapshots(
        {"functions": {"public.f()": body}},
        {"functions": {"public.f()": body.replace("DECLARE", "    DECLARE").replace("  n int;", "\tn int;")}},
        expected_label="head has",
        actual_label="database has",
    )
    assert lines == [
        "changed function public.f(): line 2 differs only in whitespace (\u00b7 a space, \u2192 a tab): "
        "head has 'DECLARE', database has '\u00b7\u00b7\u00b7\u00b7DECLARE'"
    ]


def test_a_trailing_space_in_a_one_line_definition_is_drawn():
    head = {"policies": {"public.waha_servers.p": "PERMISSIVE FOR SELECT TO authenticated USING (true)"}}
    found = {"policies": {"public.waha_servers.p": "PERMISSIVE FOR SELECT TO  authenticated USING (true)"}}
    (line,) = catalog.diff_snapshots(head, found)
    assert "differs only in whitespace" in line and "TO\u00b7\u00b7authenticated" in line


@pytest.mark.parametrize("count, words", [(0, "0 differences"), (1, "1 difference"), (5, "5 differences")])
def test_counts_take_the_noun_in_the_right_number(count, words):
    assert catalog.plural(count, "difference") == words


def test_foreign_keys_to_auth_users_and_other_tables_are_not_waha_objects():
    snapshot = {
        "constraints": {
            "public.waha_servers.waha_servers_user_id_fkey": "FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE",
            "public.waha_servers.waha_servers_pkey": "PRIMARY KEY (id)",
            "public.campaigns.campaigns_pkey": "PRIMARY KEY (id)",
        }
    }
    assert catalog.waha_objects(snapshot)["constraints"] == {
        "public.waha_servers.waha_servers_pkey": "PRIMARY KEY (id)"
    }


def detect(url: sa.URL) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return catalog.detect_drift(connection)
    finally:
        engine.dispose()


def test_head_catalog_is_what_the_migrations_make_on_every_kind(fresh_database):
    for kind in ("head", "supabase_head", "legacy_head"):
        assert detect(fresh_database(kind)) == [], kind


def test_the_head_catalog_recorded_on_this_server_is_the_file_byte_for_byte(fresh_database):
    """Recorded on 15, 16 or 18, head_catalog.json is the same file: the suite runs this on each."""
    for kind in ("head", "supabase_head"):
        engine = create_engine(fresh_database(kind))
        try:
            with engine.connect() as connection:
                assert catalog.render_head_catalog(connection) == catalog.HEAD_CATALOG.read_text(), kind
        finally:
            engine.dispose()


# --- real differences are drift on every server version ------------------------------------------

HEAD_GRANTS = "authenticated: DELETE, INSERT, SELECT, UPDATE; service_role: ALL"


def drift_after(url: sa.URL, statement: str) -> list[str]:
    run_sql(url, statement)
    return detect(url)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        pytest.param(
            "DROP INDEX public.waha_sessions_status_idx",
            ["missing index public.waha_sessions.waha_sessions_status_idx"],
            id="dropped index",
        ),
        pytest.param(
            "ALTER TABLE public.waha_servers ALTER COLUMN nome TYPE varchar(100)",
            [
                "changed column public.waha_servers.nome: head has 'nome character varying(255) NOT NULL', "
                "database has 'nome character varying(100) NOT NULL'"
            ],
            id="changed type",
        ),
        pytest.param(
            "ALTER TABLE public.waha_sessions ALTER COLUMN status DROP NOT NULL",
            [
                'changed column public.waha_sessions.status: head has "status character varying(50) NOT NULL DEFAULT '
                "'STOPPED'::character varying\", database has \"status character varying(50) DEFAULT 'STOPPED'::character varying\""
            ],
            id="dropped NOT NULL",
        ),
        pytest.param(
            "ALTER TABLE public.waha_servers ALTER COLUMN api_key SET NOT NULL",
            [
                "changed column public.waha_servers.api_key: head has 'api_key text', database has 'api_key text NOT NULL'"
            ],
            id="added NOT NULL",
        ),
        pytest.param(
            "GRANT TRUNCATE ON public.waha_servers TO authenticated",
            [
                f"changed grants on public.waha_servers: head has '{HEAD_GRANTS}', "
                "database has 'authenticated: DELETE, INSERT, SELECT, TRUNCATE, UPDATE; service_role: ALL'"
            ],
            id="extra grant",
        ),
        pytest.param(
            "GRANT SELECT ON public.waha_servers TO PUBLIC",
            [
                f"changed grants on public.waha_servers: head has '{HEAD_GRANTS}', database has 'PUBLIC: SELECT; {HEAD_GRANTS}'"
            ],
            id="grant to PUBLIC",
        ),
    ],
)
def test_a_real_difference_is_one_line_of_drift_on_every_version(fresh_database, statement, expected):
    """Exactly the lines expected: on 18, no NOT NULL constraint of pg_constraint adds to them."""
    assert drift_after(fresh_database("head"), statement) == expected


def test_service_role_short_of_one_privilege_no_longer_holds_all(fresh_database):
    url = fresh_database("head")
    maintain = "MAINTAIN, " if server_version(url)[0] // 10000 >= 17 else ""
    assert drift_after(url, "REVOKE TRUNCATE ON public.waha_sessions FROM service_role") == [
        f"changed grants on public.waha_sessions: head has '{HEAD_GRANTS}', "
        f"database has 'authenticated: DELETE, INSERT, SELECT, UPDATE; service_role: DELETE, INSERT, {maintain}REFERENCES, SELECT, TRIGGER, UPDATE'"
    ]


# What only newer servers can express: drift where it exists; before that the server
# refuses the statement, so a database cannot hold it and there is nothing to compare.
@pytest.mark.parametrize(
    ("since", "statement", "expected"),
    [
        pytest.param(
            17,
            "GRANT MAINTAIN ON public.waha_servers TO authenticated",
            [
                f"changed grants on public.waha_servers: head has '{HEAD_GRANTS}', "
                "database has 'authenticated: DELETE, INSERT, MAINTAIN, SELECT, UPDATE; service_role: ALL'"
            ],
            id="MAINTAIN granted to authenticated",
        ),
        pytest.param(
            # What ALL is on 15 is short of ALL on 17 and later.
            17,
            "REVOKE MAINTAIN ON public.waha_servers FROM service_role",
            [
                f"changed grants on public.waha_servers: head has '{HEAD_GRANTS}', database has "
                "'authenticated: DELETE, INSERT, SELECT, UPDATE; service_role: DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE'"
            ],
            id="MAINTAIN revoked from service_role",
        ),
        pytest.param(
            18,
            "ALTER TABLE public.waha_servers ADD CONSTRAINT waha_servers_api_key_not_null NOT NULL api_key NOT VALID",
            [
                "changed column public.waha_servers.api_key: head has 'api_key text', database has 'api_key text NOT NULL'",
                "unexpected constraint public.waha_servers.waha_servers_api_key_not_null: 'NOT NULL api_key NOT VALID'",
            ],
            id="NOT NULL NOT VALID",
        ),
        pytest.param(
            18,
            "ALTER TABLE public.waha_servers ALTER CONSTRAINT waha_servers_nome_not_null NO INHERIT",
            ["unexpected constraint public.waha_servers.waha_servers_nome_not_null: 'NOT NULL nome NO INHERIT'"],
            id="NOT NULL NO INHERIT",
        ),
        pytest.param(
            # A name is nothing 15 can say, and a renamed column keeps its constraint's old name.
            18,
            "ALTER TABLE public.waha_servers RENAME CONSTRAINT waha_servers_nome_not_null TO waha_servers_nome_required",
            [],
            id="renamed NOT NULL constraint",
        ),
    ],
)
def test_what_only_newer_servers_can_express_is_judged_where_it_exists(fresh_database, since, statement, expected):
    url = fresh_database("head")
    if server_version(url)[0] // 10000 < since:
        with pytest.raises(psycopg.Error):
            run_sql(url, statement)
        assert detect(url) == []
    else:
        assert drift_after(url, statement) == expected
