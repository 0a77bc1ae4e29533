"""Revision 0010 on databases that already hold data: duplicates are listed and nothing changes; the downgrade
gives back allocate_waha_session exactly as before."""

from __future__ import annotations

import uuid

import pytest

from tests.support.databases import database_state, downgrade, run_sql, upgrade
from tests.support.factories import add_server
from waha_db.lifecycle import revisions
from waha_db.lifecycle.migrate import MigrationError

REVISION = "0010"
BELOW = revisions.previous(REVISION)
USER = uuid.UUID("0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44")
ALLOCATE = """
SELECT pg_catalog.pg_get_functiondef(proc.oid), proc.proacl::text, pg_catalog.obj_description(proc.oid, 'pg_proc')
FROM pg_catalog.pg_proc AS proc WHERE proc.oid = 'public.allocate_waha_session(uuid, text, uuid[])'::regprocedure
"""


@pytest.fixture
def below(fresh_database):
    url = fresh_database("empty")
    upgrade(url, BELOW)
    return url


def test_one_server_under_two_urls_is_listed_and_nothing_changes(below):
    first, second = (
        add_server(below, USER, "http://h:1/", api_url="http://h:1/"),
        add_server(below, USER, "HTTP://H:1", api_url="HTTP://H:1"),
    )
    add_server(below, USER, "https://h:1", api_url="https://h:1")  # another scheme: another server
    before = database_state(below)
    with pytest.raises(MigrationError) as refused:
        upgrade(below)
    message = str(refused.value)
    assert message.startswith(
        "waha_servers holds the same WAHA server twice for a user, under URLs written differently:"
    )
    assert f"user {USER}: server {second} ('HTTP://H:1') and server {first} ('http://h:1/')" in message
    assert "waha-db servers remove ID" in message and "Nothing was changed" in message
    assert database_state(below) == before


def test_two_occupying_sessions_of_one_name_are_listed_and_nothing_changes(below):
    alpha, beta = (
        add_server(below, USER, "https://alpha.example", api_url="https://alpha.example"),
        add_server(below, USER, "https://beta.example", api_url="https://beta.example"),
    )
    insert = (
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 'c1_1', %s)"
    )
    run_sql(below, insert, (USER, alpha, "WORKING"))
    run_sql(below, insert, (USER, beta, "connecting"))
    before = database_state(below)
    with pytest.raises(MigrationError) as refused:
        upgrade(below)
    message = str(refused.value)
    assert message.startswith("a user holds two occupying sessions of the same name, which the app cannot tell apart:")
    assert f"user {USER}, session c1_1:" in message and "WORKING" in message and "connecting" in message
    assert "release_waha_session" in message
    assert database_state(below) == before
    run_sql(below, "UPDATE public.waha_sessions SET status = 'STOPPED' WHERE waha_server_id = %s", (beta,))
    upgrade(below)
    assert run_sql(below, "SELECT version_num FROM public.alembic_version") == [(revisions.head(),)]


@pytest.mark.parametrize(
    ("written", "same_as"),
    [
        ("https://waha.example/", "https://waha.example"),
        ("HTTPS://Waha.Example", "https://waha.example"),
        ("https://waha.example:443/api/", "https://waha.example/api"),
        ("http://waha.example:80", "http://waha.example"),
    ],
)
def test_the_normalized_url_is_the_same_for_one_server_written_differently(fresh_database, written, same_as):
    url = fresh_database("head")
    assert run_sql(
        url, "SELECT public.waha_normalized_url(%s) = public.waha_normalized_url(%s)", (written, same_as)
    ) == [(True,)]


@pytest.mark.parametrize(
    ("one", "other"), [("http://waha.example:443", "http://waha.example"), ("http://h:1", "http://h:2")]
)
def test_the_normalized_url_keeps_apart_what_differs(fresh_database, one, other):
    url = fresh_database("head")
    assert run_sql(url, "SELECT public.waha_normalized_url(%s) = public.waha_normalized_url(%s)", (one, other)) == [
        (False,)
    ]


@pytest.mark.parametrize("kind", ["empty", "supabase_empty"])
def test_downgrade_restores_allocate_waha_session_exactly(fresh_database, kind):
    url = fresh_database(kind)
    upgrade(url, BELOW)
    before = run_sql(url, ALLOCATE)
    upgrade(url)
    assert run_sql(url, ALLOCATE) != before
    downgrade(url, BELOW)
    assert run_sql(url, ALLOCATE) == before
    assert run_sql(url, "SELECT to_regprocedure('public.waha_normalized_url(text)')") == [(None,)]
