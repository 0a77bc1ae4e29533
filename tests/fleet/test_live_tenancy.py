"""One WAHA, one tenant: `reconcile --live --apply` never copies a WAHA shared by two users into either's rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.support.factories import add_user, add_waha_server
from waha_db.database import create_engine
from waha_db.fleet.live import reconcile_live
from waha_db.fleet.live_report import render_live_report


@pytest.fixture
def engine(v21_module_url):
    engine = create_engine(v21_module_url)
    yield engine
    engine.dispose()


def sessions_of(engine, user_id) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT session_name FROM public.waha_sessions WHERE user_id = :user ORDER BY 1"),
                {"user": user_id},
            ).scalars()
        )


def test_a_url_registered_by_two_users_is_skipped_and_neither_gets_its_sessions(engine, fake_waha):
    victim, intruder = add_user(engine), add_user(engine)
    shared = fake_waha("healthy")
    shared.run_session("loja-1", phone="5511999990001", push_name="Loja 1")
    own = fake_waha("healthy")
    own.run_session("mine")
    add_waha_server(engine, victim, shared.url, timeout=2)
    # The same WAHA, written differently: the normalized URL (revision 0010) is what counts.
    intruder_server = add_waha_server(engine, intruder, shared.url.replace("http://", "HTTP://") + "/", timeout=2)
    add_waha_server(engine, intruder, own.url, timeout=2)

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
