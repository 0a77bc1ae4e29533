"""The schema's functions as the app calls them (`supabase.rpc(...)`), and the counts the tests read back.

One helper per function, shared by every test that calls it; a test about a function's
whole answer reads it itself, in its own file.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from tests.support.databases import Target, run_sql

# A session occupies a slot of its server unless it is stopped (the schema's rule, upper-cased).
OCCUPYING = "upper(status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')"


def allocate(
    target: Target, user_id: Any, name: str, excluded: Sequence[Any] | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    """allocate_waha_session(user, name[, excluded]): the session's id and its server's."""
    if excluded is None:
        rows = run_sql(target, "SELECT id, waha_server_id FROM public.allocate_waha_session(%s, %s)", (user_id, name))
    else:
        rows = run_sql(
            target,
            "SELECT id, waha_server_id FROM public.allocate_waha_session(%s, %s, %s)",
            (user_id, name, list(excluded)),
        )
    return rows[0]


def record_event(target: Target, server_id: Any, event: dict) -> tuple[str, uuid.UUID | None, str | None]:
    """record_waha_session_event(server, event): (outcome, session_id, session_status)."""
    return run_sql(
        target,
        "SELECT outcome, session_id, session_status FROM public.record_waha_session_event(%s, %s)",
        (server_id, Jsonb(event)),
    )[0]


def report_failure(target: Target, server_id: Any, reason: str = "connection refused") -> tuple:
    """report_waha_server_failure(server, reason): (consecutive_failures, the cooldown's length, last_error, user_id)."""
    return run_sql(
        target,
        "SELECT consecutive_failures, cooldown_until - last_failure_at, last_error, user_id"
        " FROM public.report_waha_server_failure(%s, %s)",
        (server_id, reason),
    )[0]


def report_success(target: Target, server_id: Any) -> tuple:
    """report_waha_server_success(server): (consecutive_failures, cooldown_until, last_error, whether last_success_at is set)."""
    return run_sql(
        target,
        "SELECT consecutive_failures, cooldown_until, last_error, last_success_at IS NOT NULL"
        " FROM public.report_waha_server_success(%s)",
        (server_id,),
    )[0]


def sessions_ativas(target: Target, server_id: Any) -> int:
    """The server's counter, as selection reads it."""
    return run_sql(target, "SELECT sessions_ativas FROM public.waha_servers WHERE id = %s", (server_id,))[0][0]


def occupying(target: Target, server_id: Any) -> int:
    """How many sessions of the server occupy a slot: what sessions_ativas must say."""
    return run_sql(
        target, f"SELECT count(*) FROM public.waha_sessions WHERE waha_server_id = %s AND {OCCUPYING}", (server_id,)
    )[0][0]
