"""The pure parts of waha_db.fleet.servers: the seed's screen and the explanation of a pick (no server needed)."""

from __future__ import annotations

from datetime import timedelta

from tests.support.factories import EPOCH
from tests.support.factories import server_row as server
from waha_db.fleet.health import Health
from waha_db.fleet.selection import explain_pick
from waha_db.fleet.servers import render_server_list


def test_equal_priority_and_load_is_decided_by_free_slots():
    big, small = server("Big", 5, 10, 100), server("Small", 5, 1, 10)
    assert explain_pick(big, [big, small], []).reasons[1] == "same priority and load as Small, more free slots"


def test_full_tie_is_decided_by_age():
    old, new = server("Old", 5, 1, 10, age=2), server("New", 5, 1, 10)
    assert explain_pick(old, [old, new], []).reasons[1] == "same priority, load and free slots as New, added earlier"


def test_sole_candidate_says_so_and_lists_why_others_are_not():
    only, full, off = server("Only", 1, 0, 5), server("Full", 9, 5, 5), server("Off", 9, 0, 5, active=False)
    pick = explain_pick(only, [only, full, off], [])
    assert pick.reasons == ["priority 1, load 0/5 (0%)", "the only active server with free capacity"]
    assert pick.not_candidates == ["Full: full, 5/5 sessions", "Off: disabled"]


def test_a_healthy_server_beats_one_cooling_down_whatever_the_priority():
    principal, backup = server("Principal", 10, 0, 50), server("Backup", 5, 0, 30)
    cooling = {principal.id: Health(principal.id, 2, EPOCH + timedelta(minutes=1), "connection refused", EPOCH, None)}
    pick = explain_pick(backup, [principal, backup], [], cooling)
    assert pick.reasons[1] == (
        "healthy, while Principal is cooling down (2 failure(s) in a row: connection refused, until 00:01:00 UTC)"
    )


def test_when_all_cool_down_the_earliest_cooldown_end_is_explained():
    first, second = server("First", 1, 0, 5), server("Second", 9, 0, 5)
    cooling = {
        first.id: Health(first.id, 1, EPOCH + timedelta(seconds=30), None, EPOCH, None),
        second.id: Health(second.id, 3, EPOCH + timedelta(minutes=4), None, EPOCH, None),
    }
    pick = explain_pick(first, [first, second], [], cooling)
    assert (
        pick.reasons[1] == "cooling down (1 failure(s) in a row, until 00:00:30 UTC), but every other candidate is too"
    )
    assert pick.reasons[2] == "its cooldown ends before that of Second"


def test_screen_lines_of_active_and_disabled_servers():
    screen = render_server_list([server("Principal", 10, 15, 50), server("Teste", 0, 0, 10, active=False)]).splitlines()
    assert screen[5].rstrip("│ ").endswith("Sessões: 15/50  |  Prioridade: 10")
    assert screen[9].rstrip("│ ").endswith("Desativado      |  Prioridade: 0")
    assert screen[3].startswith("│ 🟢 Principal") and screen[7].startswith("│ 🔴 Teste")
    assert len({len(line) for line in screen if not line.startswith("│ 🟢") and not line.startswith("│ 🔴")}) == 1
