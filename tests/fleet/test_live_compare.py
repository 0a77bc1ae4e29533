"""The pure half of `sessions reconcile --live`: reading WAHA's answer, and comparing it with the rows (no server needed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.fleet.waha_shapes import ACTIVITY_MS, session_info_2026
from tests.support.factories import server_row as screen_server
from waha_db.fleet.live_compare import KINDS, RowUpdate, SessionRow, Silence, compare
from waha_db.fleet.live_waha import WahaSession, read_sessions
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

    comparison = compare(server(counter=0), [], waha, SETTLED_BEFORE, this_worker="w1")

    assert kinds(comparison) == [("unknown_session", "painel-01", True), ("counter", None, True)]
    assert comparison.inserts == tuple(waha) and comparison.occupying == 1
    assert comparison.differences[0].database is None
    assert comparison.differences[0].waha == {
        "status": "WORKING",
        "phone_number": "5511999990009",
        "profile_name": "Painel",
        "engine": "WEBJS",
        "assigned_worker": "w1",
        "activity_at": None,
    }
    assert comparison.differences[0].action == (
        f"insert it for the server's user ({server(0).user_id}) with WAHA's status, phone number and profile name"
    )


def test_a_session_whose_name_the_database_refuses_is_left_alone_but_counted():
    """It occupies a slot on WAHA whatever its name: the counter counts it, beyond the rows."""
    waha = [WahaSession("loja.antiga", "WORKING"), WahaSession("loja antiga", "STOPPED")]

    comparison = compare(server(counter=0), [], waha, SETTLED_BEFORE)

    assert kinds(comparison) == [
        ("unknown_session", "loja antiga", False),
        ("unknown_session", "loja.antiga", False),
        ("counter", None, True),
    ]
    assert comparison.inserts == () and comparison.occupying == 1 and comparison.beyond_rows == 1
    assert comparison.differences[1].action.endswith(
        "rename it on the WAHA server (it occupies a slot there, so it is counted)"
    )
    assert comparison.differences[0].action.endswith("rename it on the WAHA server")


def test_an_lid_id_is_inserted_without_a_phone_number_and_the_action_says_so():
    """`me.id` of a @lid session is no phone number: only the status and profile name are written."""
    [session] = read_sessions(
        [{"name": "lid-01", "status": "WORKING", "me": {"id": "1234567@lid", "pushName": "Loja"}}]
    )

    comparison = compare(server(counter=1), [], [session], SETTLED_BEFORE)

    assert session.phone_number is None and comparison.inserts == (session,)
    assert comparison.differences[0].action == (
        f"insert it for the server's user ({server(0).user_id}) with WAHA's status and profile name"
    )


def test_a_status_that_differs_only_in_case_is_the_same_status():
    lower = row("loja-01", "working")

    comparison = compare(server(counter=1), [lower], [WahaSession("loja-01", "WORKING")], SETTLED_BEFORE)

    assert comparison.differences == () and comparison.updates == () and comparison.occupying == 1


# --- other workers' sessions --------------------------------------------------------------------


def test_a_session_of_another_worker_is_reported_never_inserted_nor_counted():
    waha = [
        WahaSession("minha", "WORKING", assigned_worker="worker-a"),
        WahaSession("deles", "WORKING", "5511999990099", "Outra", assigned_worker="worker-b"),
    ]

    comparison = compare(server(counter=1), [], waha, SETTLED_BEFORE, this_worker="worker-a")

    assert kinds(comparison) == [("unknown_session", "minha", True), ("other_worker", "deles", False)]
    assert comparison.inserts == (waha[0],) and comparison.occupying == 1
    assert comparison.differences[1].detail == (
        "WAHA: WORKING (5511999990099 'Outra'), run by worker worker-b; this server is worker worker-a "
        "(servers sharing one session store list each other's)"
    )


def test_a_row_of_a_session_another_worker_runs_is_left_as_it_is_and_counted_as_a_row():
    mine = row("deles", "WORKING")

    comparison = compare(
        server(counter=1), [mine], [WahaSession("deles", "FAILED", assigned_worker="worker-b")], SETTLED_BEFORE
    )

    assert kinds(comparison) == [("other_worker", "deles", False)]
    assert comparison.updates == () and comparison.occupying == 1
    assert comparison.differences[0].session_id == mine.id
    assert "this server is no worker" in comparison.differences[0].detail


def test_sessions_without_a_worker_are_this_servers():
    waha = [WahaSession("minha", "WORKING")]

    comparison = compare(server(counter=1), [row("minha", "WORKING")], waha, SETTLED_BEFORE, this_worker="worker-a")

    assert comparison.differences == ()


# --- silent sessions ----------------------------------------------------------------------------


def test_a_working_session_silent_for_longer_than_the_threshold_is_reported_only():
    silence = Silence(NOW, timedelta(minutes=30))
    quiet = WahaSession("quieta", "WORKING", activity_at=NOW - timedelta(minutes=95))
    active = WahaSession("ativa", "WORKING", activity_at=NOW - timedelta(minutes=29))
    unknown = WahaSession("sem-data", "WORKING")  # WAHA before 2026 sends no activity: nothing is inferred
    scanning = WahaSession("qr", "SCAN_QR_CODE", activity_at=NOW - timedelta(hours=5))
    rows = [row(session.name, session.status) for session in (quiet, active, unknown, scanning)]

    comparison = compare(server(counter=4), rows, [quiet, active, unknown, scanning], SETTLED_BEFORE, silence=silence)

    assert kinds(comparison) == [("silent", "quieta", False)]
    assert comparison.updates == () and comparison.occupying == 4
    assert comparison.differences[0].detail == (
        "WAHA: WORKING, but its last activity was 95 min before WAHA was read "
        "(2026-12-02 10:25:00 UTC; the threshold is 30 min)"
    )
    assert comparison.differences[0].session_id == rows[0].id


def test_silence_is_not_looked_for_without_a_threshold():
    quiet = WahaSession("quieta", "WORKING", activity_at=NOW - timedelta(days=3))

    assert compare(server(counter=1), [row("quieta", "WORKING")], [quiet], SETTLED_BEFORE).differences == ()


def test_activity_and_workers_are_read_from_wahas_2026_answer():
    answer = [
        session_info_2026("a", "WORKING", phone="5511999990001", worker="worker-a", activity_ms=ACTIVITY_MS),
        {"name": "b", "status": "WORKING", "assignedWorker": "  ", "timestamps": {"activity": "yesterday"}},
        {"name": "c", "status": "WORKING", "assignedWorker": "w\x1b[2J", "timestamps": {"activity": 1e30}},
    ]

    a, b, c = read_sessions(answer)

    assert (a.assigned_worker, a.activity_at) == ("worker-a", datetime.fromtimestamp(ACTIVITY_MS / 1000, timezone.utc))
    assert (b.assigned_worker, b.activity_at) == (None, None)
    assert (c.assigned_worker, c.activity_at) == ("w\\x1b[2J", None)


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
