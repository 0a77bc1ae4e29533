"""What the tests of `reconcile_live` write and read: aged session rows, a server's rows and counter, the findings."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from tests.support.databases import run_sql
from tests.support.factories import add_session
from waha_db.fleet.live import reconcile_live

HOUR = dt.timedelta(hours=1)


def add_row(engine, user, server, name, status, phone=None, profile=None, *, age=HOUR) -> uuid.UUID:
    """A session row written `age` ago (by default long before any grace)."""
    [(written,)] = run_sql(engine, "SELECT now() - %s", (age,))
    return add_session(
        engine,
        user,
        server,
        name,
        status=status,
        phone_number=phone,
        profile_name=profile,
        created_at=written,
        updated_at=written,
    )


def sessions(engine, server) -> dict[str, tuple]:
    """name -> (user_id, status, phone_number, profile_name, last_connected_at is set)."""
    with engine.connect() as connection:
        return {
            row.session_name: (row.user_id, row.status, row.phone_number, row.profile_name, row.connected)
            for row in connection.execute(
                sa.text(
                    "SELECT session_name, user_id, status, phone_number, profile_name, last_connected_at IS NOT NULL "
                    "AS connected FROM public.waha_sessions WHERE waha_server_id = :id"
                ),
                {"id": server},
            )
        }


def counter(engine, server) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT sessions_ativas FROM public.waha_servers WHERE id = :id"), {"id": server}
        ).scalar_one()


def reconcile(engine, user, **options):
    with engine.connect() as connection:
        return reconcile_live(connection, user_id=user, backoff=0, **options)


def found(report) -> list[tuple[str, str | None]]:
    return [
        (d.kind, d.session_name)
        for item in report.servers
        for d in (item.comparison.differences if item.comparison else ())
    ]
