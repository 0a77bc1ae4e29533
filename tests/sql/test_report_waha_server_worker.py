"""report_waha_server_worker (revision 0012): each server's WAHA worker id, kept in waha_server_health.

Each test runs on every V2.1 kind, in a transaction rolled back at its end.
"""

from __future__ import annotations

import pytest

from tests.fleet import waha_shapes
from tests.support.assertions import acting_as, assert_refused
from tests.support.factories import add_server, add_user
from tests.support.waha_calls import report_failure


def report_worker(tx, server_id, worker_id):
    return tx.execute(
        "SELECT waha_worker_id, consecutive_failures, waha_version FROM public.report_waha_server_worker(%s, %s)",
        (server_id, worker_id),
    ).fetchone()


def test_the_worker_id_of_the_server_status_is_kept_and_replaced(tx):
    server = add_server(tx, add_user(tx), "principal")
    answer = waha_shapes.SERVER_STATUS_2026

    assert report_worker(tx, server, answer["worker"]["id"]) == ("worker-a", 0, None)
    assert report_worker(tx, server, " worker-b ") == ("worker-b", 0, None)


@pytest.mark.parametrize("none", ["", "   ", None], ids=["empty", "blank", "absent"])
def test_an_empty_or_absent_worker_id_is_none(tx, none):
    """The recorded 2024.10.8 server answers worker.id "": no worker; a 404 is reported as None."""
    server = add_server(tx, add_user(tx), "principal")
    report_worker(tx, server, "worker-a")
    assert waha_shapes.recorded("05_server_status_good").json()["worker"]["id"] == ""

    assert report_worker(tx, server, none)[0] is None


def test_the_health_and_the_version_are_left_alone(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_failure(tx, server)
    tx.execute("SELECT public.report_waha_server_version(%s, '2026.9.1', 'GOWS', 'CORE')", (server,))

    assert report_worker(tx, server, "worker-a") == ("worker-a", 1, "2026.9.1")
    assert report_failure(tx, server)[0] == 2


def test_a_long_worker_id_is_cut_to_100_characters(tx):
    server = add_server(tx, add_user(tx), "principal")
    assert report_worker(tx, server, "w" * 300)[0] == "w" * 100


def test_a_server_that_is_not_yours_is_wah20(tx):
    ana, bruno = add_user(tx), add_user(tx)
    brunos = add_server(tx, bruno, "bruno")

    with acting_as(tx, "authenticated", ana):
        assert_refused(tx, "SELECT public.report_waha_server_worker(%s, 'worker-a')", (brunos,), sqlstate="WAH20")
    with acting_as(tx, "authenticated", bruno):
        assert report_worker(tx, brunos, "worker-a")[0] == "worker-a"
    with acting_as(tx, "service_role"):
        assert report_worker(tx, brunos, "worker-b")[0] == "worker-b"
