"""`sessions`: the servers' capacity counters, and the rows against what the WAHA servers run (waha_db.fleet)."""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid

import click

from waha_db.cli.edge import Invocation, library_errors, pass_invocation, require_confirmation
from waha_db.cli.options import YES, round_options
from waha_db.fleet import allocation, health, live, live_report
from waha_db.fleet.live_compare import DEFAULT_SILENT_AFTER
from waha_db.fleet.progress import terminal_progress


@click.group()
@pass_invocation
def sessions(invocation: Invocation) -> None:
    """WhatsApp sessions: the capacity counters of the servers (sessions_ativas), and the truth of the servers.

    \b
    Example:
      waha-db sessions reconcile            # report counters that differ from the sessions
      waha-db sessions reconcile --apply
      waha-db sessions reconcile --live     # report rows that differ from what the WAHA servers run
    """
    invocation.requires_schema = True


@sessions.command()
@click.option(
    "--live",
    "against_waha",
    is_flag=True,
    help="Compare the sessions with what each WAHA server runs (GET /api/sessions), not only the counters with the rows.",
)
@click.option(
    "--user", "user_id", type=click.UUID, metavar="UUID", help="With --live: only this user's active servers."
)
@click.option("--apply", is_flag=True, help="Correct what the rules allow (see above), after confirmation.")
@click.option(
    "--server",
    "servers",
    multiple=True,
    type=click.UUID,
    metavar="ID",
    help="Without --live: also correct this server's counter when it is above its sessions. "
    "With --live: reconcile this server (active or not) instead of every active one. Repeatable.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help=f"With --live: leave alone rows written this recently (default {live.DEFAULT_GRACE_SECONDS:g}): "
    "the app may still be creating the session on WAHA.",
)
@click.option(
    "--silent-after",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MINUTES",
    help=f"With --live: report a WORKING session whose last activity is older than this "
    f"(default {DEFAULT_SILENT_AFTER.total_seconds() / 60:g}; WAHA 2026 sends it).",
)
@YES
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@round_options
@pass_invocation
@library_errors
def reconcile(
    invocation: Invocation,
    against_waha: bool,
    user_id: uuid.UUID | None,
    apply: bool,
    servers: tuple[uuid.UUID, ...],
    grace: float | None,
    silent_after: float | None,
    yes: bool,
    as_json: bool,
    concurrency: int,
    per_host: int,
    deadline: float,
) -> None:
    """Compare each server's sessions_ativas with its occupying sessions, and correct them.

    A session occupies a slot unless its status is STOPPED, FAILED or DISCONNECTED
    (any case). Every difference is reported. With --apply, counters BELOW their
    sessions are corrected (they let allocation overfill the server); counters ABOVE
    may count sessions that live outside waha_sessions, so they are corrected only
    for the servers named with --server.

    With --live, each active server (or each --server, or the --user's) is asked
    what it runs, and the report lists, per server: sessions WAHA has that the
    database does not know, rows counted as occupying that WAHA does not have or
    reports STOPPED/FAILED, other status differences, phone number and profile
    name differences, sessions another WAHA worker runs (other_worker), WORKING
    sessions silent for more than --silent-after minutes (silent, from WAHA 2026's
    timestamps.activity), and the counter WAHA's truth implies. --apply then inserts
    the unknown sessions for the server's user, marks the missing ones STOPPED
    (never deletes a row), writes WAHA's statuses, phone numbers and profile
    names, and sets the counter, in one transaction per server, safe against
    concurrent allocate_waha_session / release_waha_session; it leaves other
    workers' and silent sessions alone. Nothing is ever changed on a WAHA server.
    A server that cannot be read (within --deadline: every server is asked at
    once) is reported and skipped (exit 1), never taken as "no sessions". A server
    whose URL more than one user registered is reported as "registered by N users"
    and skipped: one WAHA, one tenant; so is a server that reports the WAHA worker
    another server of its user reports. --concurrency, --per-host and --deadline go
    with --live; so do WAHA_DB_PROBE_DENY and SSL_CERT_FILE / SSL_CERT_DIR, as for
    `monitor`.

    \b
    Example:
      waha-db sessions reconcile
      waha-db sessions reconcile --apply --yes
      waha-db sessions reconcile --apply --server 3f0c2a9e-1b4d-4c8e-9f7a-0d1e2f3a4b5c
      waha-db sessions reconcile --live
      waha-db sessions reconcile --live --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --apply --yes --json
    """
    if against_waha:
        options = health.round_options(concurrency=concurrency, per_host=per_host, deadline=deadline)
        _reconcile_live(invocation, user_id, servers, apply, grace, silent_after, yes, as_json, options)
        return
    if user_id is not None or grace is not None or silent_after is not None:
        raise click.UsageError("--user, --grace and --silent-after go with --live")

    def confirm(report: allocation.ReconcileReport) -> None:
        if not as_json:
            click.echo(allocation.render_report(report))
        require_confirmation("Correct these counters?", yes, "correct them")

    with invocation.engine() as engine:
        report = allocation.reconcile_counters(engine, apply=apply, servers=servers, confirm=confirm)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else allocation.render_report(report))


def _reconcile_live(
    invocation: Invocation,
    user_id: uuid.UUID | None,
    server_ids: tuple[uuid.UUID, ...],
    apply: bool,
    grace: float | None,
    silent_after: float | None,
    yes: bool,
    as_json: bool,
    options: health.RoundOptions,
) -> None:
    """The --live half of `sessions reconcile`: report, ask, apply, print; exit 1 when a server was not reconciled."""

    def confirm(report: live.LiveReport) -> None:
        if not as_json:
            click.echo(live_report.render_live_report(report))
        require_confirmation("Bring the database in line with the WAHA servers?", yes, "apply")

    with invocation.engine() as engine:
        report = live.reconcile_fleet(
            engine,
            user_id=user_id,
            server_ids=server_ids,
            apply=apply,
            grace=live.DEFAULT_GRACE_SECONDS if grace is None else grace,
            silent_after=DEFAULT_SILENT_AFTER if silent_after is None else dt.timedelta(minutes=silent_after),
            confirm=None if yes else confirm,
            options=options,
            progress=terminal_progress(sys.stderr, quiet=as_json),
        )
    click.echo(
        json.dumps(report.as_json(), indent=2, ensure_ascii=False)
        if as_json
        else live_report.render_live_report(report)
    )
    if report.problems:
        raise click.ClickException(report.problems_line())
