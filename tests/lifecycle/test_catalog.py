"""Snapshot comparison (pure), and drift of real databases from the recorded head catalog."""

from __future__ import annotations

import sqlalchemy as sa

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
    assert lines == ["changed function public.f(): expected 'line 3: RETURN 1;', found 'line 3: RETURN 2;'"]


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
