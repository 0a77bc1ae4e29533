"""Revision 0012 up and down on a database that holds data: the downgrade gives back the database
as the revision below left it (catalog and rows), the sessions and health kept; up again works."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fleet.waha_shapes import session_status_event_2026
from tests.support.databases import database_state, downgrade, run_sql, upgrade
from tests.support.factories import add_server, add_user
from waha_db.lifecycle import revisions

REVISION = "0012"
BELOW = revisions.previous(REVISION)
USER = uuid.UUID("0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44")


def fill(url) -> uuid.UUID:
    """A user's server with a failure on record and one STARTING session; the server's id."""
    add_user(url, USER)
    server = add_server(url, USER, "Principal", api_url="https://waha1.example", max_sessions=5)
    run_sql(url, "SELECT public.report_waha_server_failure(%s, 'timed out')", (server,))
    run_sql(url, "SELECT public.allocate_waha_session(%s, 'cli-1')", (USER,))
    return server


@pytest.mark.parametrize("kind", ["empty", "supabase_empty"])
def test_down_gives_back_the_database_below_and_up_again_works(fresh_database, kind):
    url = fresh_database(kind)
    upgrade(url, BELOW)
    server = fill(url)
    before = database_state(url)

    upgrade(url, REVISION)
    outcome = run_sql(
        url,
        "SELECT outcome FROM public.record_waha_session_event(%s, %s::jsonb)",
        (server, json.dumps(session_status_event_2026("cli-1", "WORKING", phone="5511999990001", push_name="Loja"))),
    )
    worker = run_sql(url, "SELECT waha_worker_id FROM public.report_waha_server_worker(%s, 'worker-a')", (server,))
    memory = run_sql(url, "SELECT count(*) FROM public.waha_session_last_event")
    status = run_sql(url, "SELECT status FROM public.waha_sessions")
    downgrade(url, BELOW)
    after = database_state(url)
    upgrade(url, REVISION)

    assert (outcome, worker, memory, status) == ([("applied",)], [("worker-a",)], [(1,)], [("WORKING",)])
    # What the event wrote into the seed's tables stays (it is what WAHA said); nothing else differs.
    assert after["catalog"] == before["catalog"]
    assert {table: rows for table, rows in after["rows"].items() if table != "public.waha_sessions"} == {
        table: rows for table, rows in before["rows"].items() if table != "public.waha_sessions"
    }
    assert run_sql(url, "SELECT count(*) FROM public.waha_session_last_event") == [(0,)]
    assert run_sql(url, "SELECT waha_worker_id FROM public.waha_server_health") == [(None,)]
