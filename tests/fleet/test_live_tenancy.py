"""One WAHA, one tenant: `reconcile --live --apply` never copies a WAHA shared by two users into either's rows."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.fleet.test_live import add_server
from waha_db.database import create_engine
from waha_db.fleet.live import reconcile_live
from waha_db.fleet.live_report import render_live_report


@pytest.fixture
def engine(v21_module_url):
    engine = create_engine(v21_module_url)
    yield engine
    engine.dispose()


def new_user(engine) -> uuid.UUID:
    user_id = uuid.uuid4()
    with engine.begin() as connection:
        if connection.execute(sa.text("SELECT to_regclass('auth.users') IS NOT NULL")).scalar_one():
            connection.execute(sa.text("INSERT INTO auth.users (id) VALUES (:id)"), {"id": user_id})
    return user_id


def sessions_of(engine, user_id) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT session_name FROM public.waha_sessions WHERE user_id = :user ORDER BY 1"),
                {"user": user_id},
            ).scalars()
        )


def test_a_url_registered_by_two_users_is_skipped_and_neither_gets_its_sessions(engine, fake_waha):
    victim, intruder = new_user(engine), new_user(engine)
    shared = fake_waha("healthy")
    shared.run_session("loja-1", phone="5511999990001", push_name="Loja 1")
    own = fake_waha("healthy")
    own.run_session("mine")
    add_server(engine, victim, shared.url)
    # The same WAHA, written differently: the normalized URL (revision 0010) is what counts.
    intruder_server = add_server(engine, intruder, shared.url.replace("http://", "HTTP://") + "/")
    add_server(engine, intruder, own.url)

    with engine.connect() as connection:
        report = reconcile_live(connection, user_id=intruder, apply=True, grace=0, backoff=0)

    skipped = next(item for item in report.servers if item.server.id == intruder_server)
    assert skipped.skipped.startswith("registered by 2 users: ")
    assert str(victim) not in skipped.skipped
    assert sessions_of(engine, intruder) == ["mine"]
    assert sessions_of(engine, victim) == []
    assert shared.requests == []  # not even asked
    text = render_live_report(report)
    assert "skipped: registered by 2 users" in text and str(victim) not in text
