"""The pure half of `sessions reconcile --live`: reading WAHA's answer, and comparing it with the rows (no server needed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.fleet.test_servers import server as screen_server
from waha_db.fleet.live import KINDS, RowUpdate, SessionRow, WahaSession, compare, read_sessions
from waha_db.fleet.probe import AnswerFailure
from waha_db.fleet.servers import Server

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
SETTLED_BEFORE = NOW - timedelta(minutes=2)
OLD = NOW - timedelta(hours=1)


def server(counter: int, max_sessions: int = 50) -> Server:
    """Principal, whose counter says `counter` (the screen tests' server)."""
    return screen_server("Principal", 10, counter, max_sessions)


def row(name: str, status: str, phone=None, profile=None, *, written=OLD) -> SessionRow:
    return SessionRow(uuid.uuid5(uuid.NAMESPACE_DNS, name), name, status, phone, profile, written)


def kinds(comparison) -> list[tuple[str, str | None, bool]]:
    return [(d.kind, d.session_name, d.fixable) for d in comparison.differences]


# --- WAHA's answer ------------------------------------------------------------------------------


def test_sessions_are_read_from_wahas_shapes():
    answer = [
        {"name": "loja-02", "status": "SCAN_QR_CODE", "config": None, "me": None},
        {
            "name": "loja-01",
            "status": "WORKING",
            "me": {"id": "5511999990001@c.us", "pushName": " Loja 1 "},
            "engine": {"engine": "NOWEB", "state": "CONNECTED"},
            "assignedWorker": "worker-1",
        },
        {
            "name": "loja-03",
            "status": "WORKING",
            "me": {"id": "5511999990003:12@s.whatsapp.net", "pushName": "x" * 300},
            "engine": "GOWS",
        },
        {"name": "loja-04", "status": "WORKING", "me": {"id": "123456789@lid", "pushName": None}},
    ]

    sessions = read_sessions(answer)

    assert sessions == (
        WahaSession("loja-01", "WORKING", "5511999990001", "Loja 1", "NOWEB", "worker-1"),
        WahaSession("loja-02", "SCAN_QR_CODE"),
        WahaSession("loja-03", "WORKING", "5511999990003", "x" * 255, "GOWS"),
        WahaSession("loja-04", "WORKING"),
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"sessions": []}, "not a WAHA server: /api/sessions did not answer a list of sessions"),
        ([{"status": "WORKING"}], "not a WAHA answer: entry 0 of /api/sessions has no session name or status"),
        (
            [{"name": "a", "status": "WORKING"}, {"name": "b"}],
            "not a WAHA answer: entry 1 of /api/sessions has no session name or status",
        ),
        (
            [{"name": "a", "status": "WORKING"}, {"name": "a", "status": "STOPPED"}],
            "not a WAHA answer: /api/sessions lists one session name twice",
        ),
    ],
)
def test_an_answer_that_is_not_wahas_is_refused_not_guessed(answer, reason):
    with pytest.raises(AnswerFailure, match="^" + reason.replace("(", r"\(").replace(")", r"\)") + "$"):
        read_sessions(answer)


def test_an_empty_list_is_a_server_without_sessions():
    assert read_sessions([]) == ()


# --- the comparison -----------------------------------------------------------------------------


def test_rows_that_say_what_waha_says_have_no_difference():
    rows = [
        row("loja-01", "WORKING", "+55 (11) 99999-0001", "Loja 1"),
        row("loja-00", "STOPPED"),
        row("velha", "FAILED"),
    ]
    waha = [WahaSession("loja-01", "WORKING", "5511999990001", "Loja 1"), WahaSession("loja-00", "STOPPED")]

    comparison = compare(server(counter=1), rows, waha, SETTLED_BEFORE)

    assert comparison.differences == () and comparison.updates == () and comparison.inserts == ()
    assert comparison.occupying == 1


def test_a_session_only_waha_knows_is_inserted_and_counted():
    waha = [WahaSession("painel-01", "WORKING", "5511999990009", "Painel", "WEBJS", "w1")]

    comparison = compare(server(counter=0), [], waha, SETTLED_BEFORE)

    assert kinds(comparison) == [("unknown_session", "painel-01", True), ("counter", None, True)]
    assert comparison.inserts == tuple(waha) and comparison.occupying == 1
    assert comparison.differences[0].database is None
    assert comparison.differences[0].waha == {
        "status": "WORKING",
        "phone_number": "5511999990009",
        "profile_name": "Painel",
        "engine": "WEBJS",
        "assigned_worker": "w1",
    }


def test_a_session_whose_name_the_database_refuses_is_reported_not_inserted():
    comparison = compare(server(counter=0), [], [WahaSession("loja.antiga", "WORKING")], SETTLED_BEFORE)

    assert kinds(comparison) == [("unknown_session", "loja.antiga", False)]
    assert comparison.inserts == () and comparison.occupying == 0
    assert "rename it on the WAHA server" in comparison.differences[0].action


def test_an_occupying_row_waha_does_not_have_is_stopped_and_a_stopped_one_is_left_as_history():
    lost, history = row("loja-03", "WORKING"), row("loja-00", "STOPPED")

    comparison = compare(server(counter=1), [lost, history], [], SETTLED_BEFORE)

    assert kinds(comparison) == [("missing_session", "loja-03", True), ("counter", None, True)]
    assert comparison.updates == (RowUpdate(lost.id, status="STOPPED"),)
    assert comparison.occupying == 0


def test_an_occupying_row_that_waha_reports_failed_frees_its_slot():
    failed = row("loja-04", "connecting")

    comparison = compare(server(counter=1), [failed], [WahaSession("loja-04", "FAILED")], SETTLED_BEFORE)

    assert kinds(comparison) == [("stopped_on_waha", "loja-04", True), ("counter", None, True)]
    assert comparison.updates == (RowUpdate(failed.id, status="FAILED"),)
    assert "(it frees its slot)" in comparison.differences[0].action


def test_a_stopped_row_that_waha_runs_takes_a_slot_and_was_seen_connected():
    stopped = row("loja-10", "STOPPED")

    comparison = compare(server(counter=0), [stopped], [WahaSession("loja-10", "WORKING")], SETTLED_BEFORE)

    assert kinds(comparison) == [("status", "loja-10", True), ("counter", None, True)]
    assert comparison.updates == (RowUpdate(stopped.id, status="WORKING", connected=True),)
    assert comparison.differences[0].action == (
        "write WAHA's status WORKING (it takes a slot), and last_connected_at = now()"
    )


def test_a_new_phone_and_profile_name_are_written_and_a_missing_me_forgets_nothing():
    moved = row("loja-05", "WORKING", "5511999990005", "Loja Cinco")
    unpaired = row("loja-06", "SCAN_QR_CODE", "5511999990006", "Loja 6")
    waha = [WahaSession("loja-05", "WORKING", "5511988880005", "Loja 5"), WahaSession("loja-06", "SCAN_QR_CODE")]

    comparison = compare(server(counter=2), [moved, unpaired], waha, SETTLED_BEFORE)

    assert kinds(comparison) == [("profile", "loja-05", True)]
    assert comparison.updates == (RowUpdate(moved.id, phone_number="5511988880005", profile_name="Loja 5"),)
    assert comparison.differences[0].detail == (
        "database: 5511999990005 'Loja Cinco'; WAHA's me: 5511988880005 'Loja 5'"
    )


def test_one_row_with_a_status_and_a_profile_difference_gets_one_update():
    starting = row("loja-02", "STARTING")

    comparison = compare(
        server(counter=1), [starting], [WahaSession("loja-02", "WORKING", "5511999990002")], SETTLED_BEFORE
    )

    assert kinds(comparison) == [("status", "loja-02", True), ("profile", "loja-02", True)]
    assert comparison.updates == (RowUpdate(starting.id, "WORKING", "5511999990002", None, True),)


def test_a_row_written_moments_ago_is_settling_and_left_alone():
    allocated = row("loja-07", "STARTING", written=NOW - timedelta(seconds=5))

    comparison = compare(server(counter=1), [allocated], [], SETTLED_BEFORE)

    assert kinds(comparison) == [("settling", "loja-07", False)]
    assert comparison.updates == () and comparison.occupying == 1
    assert (
        comparison.differences[0].detail
        == "missing_session: database: STARTING, occupying a slot; WAHA does not have it"
    )


def test_a_row_outside_the_locked_ones_is_settling():
    lost = row("loja-03", "WORKING")

    comparison = compare(server(counter=1), [lost], [], SETTLED_BEFORE, writable=frozenset())

    assert kinds(comparison) == [("settling", "loja-03", False)]


def test_more_occupying_sessions_than_max_sessions_is_reported_for_a_person_to_decide():
    waha = [WahaSession(f"s{number}", "WORKING") for number in range(3)]

    small = server(counter=0, max_sessions=1)

    comparison = compare(small, [], waha, SETTLED_BEFORE)

    assert kinds(comparison)[-2:] == [("counter", None, True), ("over_capacity", None, False)]
    assert comparison.differences[-1].action.startswith(
        f"left alone: raise max_sessions (waha-db servers update {small.id} --max-sessions 3)"
    )


def test_differences_come_in_the_order_of_their_kinds_then_by_session():
    rows = [row("z-lost", "WORKING"), row("a-lost", "WORKING"), row("m-failed", "WORKING"), row("b", "STARTING")]
    waha = [WahaSession("m-failed", "FAILED"), WahaSession("b", "WORKING"), WahaSession("new", "WORKING")]

    comparison = compare(server(counter=9), rows, waha, SETTLED_BEFORE)

    assert [d.kind for d in comparison.differences] == sorted((d.kind for d in comparison.differences), key=KINDS.index)
    assert kinds(comparison) == [
        ("unknown_session", "new", True),
        ("missing_session", "a-lost", True),
        ("missing_session", "z-lost", True),
        ("stopped_on_waha", "m-failed", True),
        ("status", "b", True),
        ("counter", None, True),
    ]
