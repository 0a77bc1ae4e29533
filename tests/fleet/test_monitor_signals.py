"""SIGTERM and Ctrl-C stop `waha-db monitor` within a couple of seconds, probes in flight cancelled.

The monitor runs as the operator runs it (a child process, the real command line),
while every server it probes hangs with the largest timeout a row could hold
before revision 0011.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.polling import wait_until
from tests.support.factories import OLD_MAXIMUM, add_servers_before_0011
from waha_db.database import create_engine

# Seconds from the signal to the exit. The design target is a tenth of a second; what this guards
# against is a monitor that waits for its hanging probes (minutes at these timeouts), so the bound
# leaves room for a loaded machine, where the interpreter's own exit has taken up to 3 s.
STOPS_WITHIN = 5.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_monitor_mid_round_within_seconds(fresh_database, fake_waha, signum):
    url = fresh_database("head")
    engine = create_engine(url)
    hanging = fake_waha("hang")
    add_servers_before_0011(
        engine, uuid.uuid4(), [f"{hanging.url}/{n}" for n in range(8)], timeout=OLD_MAXIMUM, retry_attempts=3
    )
    engine.dispose()
    environment = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from waha_db.cli import main; main()", "monitor", "--deadline", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    watchdog = threading.Timer(90, process.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        wait_until(lambda: len(hanging.requests) >= 4, "the round's probes to be in flight")
        signalled = time.monotonic()
        process.send_signal(signum)
        output, errors = process.communicate(timeout=30)
        stopped_in = time.monotonic() - signalled
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, errors
    assert stopped_in < STOPS_WITHIN, stopped_in
    assert (
        "round: 0 servers probed, 0 healthy, 0 failing" in output and "(stopped: probes in flight cancelled" in output
    )
    assert errors.splitlines()[-1].startswith("stopped after 1 round(s), 0 check(s)"), errors
