"""`monitor`: every active server of every user checked on a schedule (waha_db.fleet.monitor)."""

from __future__ import annotations

import sys
import threading

import click

from waha_db import database
from waha_db.cli.edge import Invocation, library_errors, pass_invocation
from waha_db.cli.options import round_options
from waha_db.fleet import health
from waha_db.fleet import monitor as fleet_monitor
from waha_db.fleet.policy import policy_from_environment
from waha_db.fleet.progress import terminal_progress


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="Seconds from the start of one round of checks to the next.",
)
@click.option("--once", is_flag=True, help="One round of checks, then exit (for cron).")
@round_options
@pass_invocation
@library_errors
def monitor(
    invocation: Invocation, interval: float, once: bool, concurrency: int, per_host: int, deadline: float
) -> None:
    """Check every active server of every user on a schedule, and record the outcomes.

    Runs as the role of the database URL, which must see every server (the owner or
    service_role). Prints one line per state change (healthy -> failing, failing ->
    healthy, drained when WAHA's /health says it is shutting down), when a server
    reports another WAHA version, engine, tier or worker than recorded (with a
    warning for a CORE server older than 2026.6.1 whose max_sessions is above 1, and
    for two active servers of a user that report one worker), and
    when the database connection is lost or back; it reconnects with
    backoff and never stops because one server fails. Each round asks every server
    at once and ends within --deadline, whatever the servers' timeouts; then one
    line sums it up (servers probed, healthy, failing, round time) and the outcomes
    are recorded in a few statements. SIGTERM or Ctrl-C stops it within about a
    second: the checks in flight are cancelled and not recorded. With --once, exit
    1 when the database cannot be reached.

    \b
    Probes connect only where the network policy allows: never to link-local,
    unspecified, multicast or broadcast addresses; WAHA_DB_PROBE_DENY=private,loopback
    (or public) denies more. SSL_CERT_FILE / SSL_CERT_DIR add a CA to trust.

    \b
    Example:
      waha-db monitor --interval 30
      waha-db monitor --once
    """
    invocation.requires_schema = True
    options = health.round_options(concurrency=concurrency, per_host=per_host, deadline=deadline)
    policy = options.policy if options.policy is not None else policy_from_environment()  # None: the environment's
    stop = threading.Event()
    restore = fleet_monitor.stop_on_signals(stop)
    try:
        with invocation.engine() as engine:
            click.echo(
                f"monitoring the active WAHA servers of every user at {database.connection_target(invocation.url)}"
                + (" (one round)" if once else f", every {interval:g} s; SIGTERM or Ctrl-C stops")
                + f"; {policy.describe()}",
                err=True,
            )
            progress = terminal_progress(sys.stderr)

            def on_round(summary: fleet_monitor.RoundSummary) -> None:
                if progress is not None:
                    progress.clear()
                click.echo(summary.line())

            stats = fleet_monitor.monitor(
                engine,
                interval=interval,
                once=once,
                options=options,
                stop=stop,
                emit=click.echo,
                on_round=on_round,
                progress=progress,
            )
    finally:
        restore()
    click.echo(
        f"stopped after {stats.cycles} round(s), {stats.probes} check(s), {stats.state_changes} state change(s)",
        err=True,
    )
