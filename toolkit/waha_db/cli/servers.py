"""`servers`: a user's WAHA servers, as the admin; `servers test` asks them (waha_db.fleet)."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import click

from waha_db.cli.edge import Invocation, library_errors, pass_invocation, require_confirmation
from waha_db.cli.options import YES, Command, round_options
from waha_db.fleet import fleet_summary, health, selection
from waha_db.fleet import servers as server_admin
from waha_db.fleet import workers as fleet_workers
from waha_db.fleet.progress import terminal_progress


@click.group()
@pass_invocation
def servers(invocation: Invocation) -> None:
    """Manage the WAHA servers of a user, as the admin (the role of the database URL).

    These commands act as the role of the URL (the database owner or service_role,
    which row security does not restrict), so each names the user explicitly.

    \b
    Example:
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """
    invocation.requires_schema = True


USER = click.option(
    "--user",
    "user_id",
    type=click.UUID,
    required=True,
    metavar="UUID",
    help="The user (auth.users.id) whose servers these are.",
)
SERVER_ID = click.argument("server_id", type=click.UUID, metavar="ID")


class DatabaseInteger(click.ParamType[int]):
    """A whole number that fits the database's integer columns; the columns' own rules (> 0...) are the database's."""

    name = "integer"
    LOWEST, HIGHEST = -(2**31), 2**31 - 1

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = click.INT.convert(value, param, ctx)
        if not self.LOWEST <= number <= self.HIGHEST:
            self.fail(f"{number} is out of range: waha_servers stores a whole number up to {self.HIGHEST}", param, ctx)
        return number


DB_INT = DatabaseInteger()


def server_fields(command: Command) -> Command:
    """The options of `servers add` and `servers update` (update leaves out what is not given).

    They arrive as `**values`; the commands take the invocation positional-only (`/`), a name no option can take.
    """
    options = [
        click.option("--name", help="Friendly name, e.g. 'Servidor Principal'."),
        click.option("--url", help="The WAHA server's http(s) URL, without user:password@, ?query or #fragment."),
        click.option("--api-key", help="WAHA's API key."),
        click.option("--description", help="Free text."),
        click.option("--priority", type=DB_INT, help="0 to 10; higher is preferred."),
        click.option("--max-sessions", type=DB_INT, help="Sessions this server may hold (> 0)."),
        click.option("--active/--inactive", default=None, help="Whether new sessions may go to it."),
        click.option("--webhook-url", help="http(s) URL WAHA calls back, without user:password@, ?query or #fragment."),
        click.option("--webhook-secret", help="Secret of the webhook."),
        click.option("--timeout", type=DB_INT, help="Request timeout in seconds (1 to 120)."),
        click.option("--retries", type=DB_INT, help="Retry attempts (0 to 10)."),
        click.option("--rate-limit", type=DB_INT, help="Requests per minute (> 0)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@servers.command("list")
@USER
@click.option("--json", "as_json", is_flag=True, help="Print the servers as JSON (secrets masked).")
@click.option(
    "--all", "every_card", is_flag=True, help=f"Every server's card, even above {fleet_summary.SUMMARY_ABOVE} servers."
)
@pass_invocation
@library_errors
def servers_list(invocation: Invocation, user_id: uuid.UUID, as_json: bool, every_card: bool) -> None:
    """The user's servers as the seed's "Meus Servidores WAHA" screen, best priority first.

    Green mark: active; red: disabled. Ordered as the seed's listing query
    (ORDER BY prioridade DESC, nome). Once `servers test` or `monitor` got an
    answer from a server, what it reported being (WAHA version, engine, tier, and
    its worker) is shown too, and a WAHA CORE server older than 2026.6.1 (a single
    session) whose max_sessions is above 1 gets a warning with the fix, as do two
    active servers that report one worker. A user with more than 20 servers gets a
    summary instead (counts by state: active, healthy, failing, never checked,
    full; the first failing servers with their reason); --all prints every card.

    \b
    Example:
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      waha-db servers list --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --all
    """
    with invocation.transaction() as connection:
        listing = server_admin.server_listing(connection, user_id)
        many = not as_json and not every_card and len(listing.servers) > fleet_summary.SUMMARY_ABOVE
        summary = fleet_summary.read_summary(connection, listing) if many else None
    if as_json:
        click.echo(json.dumps(listing.as_json(), indent=2, ensure_ascii=False))
    elif summary is not None:
        click.echo(fleet_summary.render_summary(user_id, summary))
    else:
        click.echo(listing.render())
    workers = {server_id: identity.worker_id for server_id, identity in listing.identities.items()}
    for group in fleet_workers.shared_workers(listing.servers, workers):
        click.echo(f"warning: {group.warning()}", err=as_json)


@servers.command("add")
@USER
@server_fields
@pass_invocation
@library_errors
def servers_add(invocation: Invocation, /, user_id: uuid.UUID, **values: Any) -> None:
    """Add a server for the user; options not given take the database's defaults.

    --name and --url are required. Bad values get the database's rule in plain words.

    \b
    Example:
      waha-db servers add --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 \\
          --name 'Servidor Principal' --url https://waha1.example.com \\
          --api-key sua-api-key --priority 10 --max-sessions 50
    """
    missing = [f"--{name}" for name in ("name", "url") if values[name] is None]
    if missing:
        raise click.UsageError(f"missing {' and '.join(missing)}")
    with invocation.transaction() as connection:
        server = server_admin.add_server(connection, user_id, **values)
    click.echo(f"added {server.line()}")


@servers.command("update")
@SERVER_ID
@server_fields
@pass_invocation
@library_errors
def servers_update(invocation: Invocation, /, server_id: uuid.UUID, **values: Any) -> None:
    """Change the given fields of server ID; the others stay as they are.

    \b
    Example:
      waha-db servers update 3f0c... --priority 8 --max-sessions 80
    """
    if all(value is None for value in values.values()):
        options = ", ".join(f"--{name.replace('_', '-')}" for name in values)
        raise click.UsageError(f"nothing to update: give at least one of {options}")
    with invocation.transaction() as connection:
        server = server_admin.update_server(connection, server_id, **values)
    click.echo(f"updated {server.line()}")


@servers.command("enable")
@SERVER_ID
@pass_invocation
@library_errors
def servers_enable(invocation: Invocation, server_id: uuid.UUID) -> None:
    """Let new sessions go to server ID again.

    \b
    Example:
      waha-db servers enable 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with invocation.transaction() as connection:
        server = server_admin.set_active(connection, server_id, True)
    click.echo(f"enabled {server.line()}")


@servers.command("disable")
@SERVER_ID
@pass_invocation
@library_errors
def servers_disable(invocation: Invocation, server_id: uuid.UUID) -> None:
    """Send no new sessions to server ID (its current sessions stay).

    \b
    Example:
      waha-db servers disable 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with invocation.transaction() as connection:
        server = server_admin.set_active(connection, server_id, False)
    click.echo(f"disabled {server.line()}")


@servers.command("remove")
@SERVER_ID
@YES
@pass_invocation
@library_errors
def servers_remove(invocation: Invocation, server_id: uuid.UUID, yes: bool) -> None:
    """Delete server ID, after confirmation; refused, with the count, while it still has sessions.

    Without a terminal it refuses unless --yes.

    \b
    Example:
      waha-db servers remove 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
      waha-db servers remove 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f --yes
    """

    # Read, ask, then lock and delete: no transaction (and no lock that allocations wait
    # for) stays open while a person reads the question.
    with invocation.transaction() as connection:
        shown = server_admin.removal(connection, server_id)
    click.echo(f"removes {shown.line()}")
    require_confirmation("Remove this server?", yes, "remove it")
    with invocation.transaction() as connection:
        server = server_admin.remove_server(connection, server_id, shown=shown)
    click.echo(f"removed {server.nome} ({server.api_url}); id {server.id}")


@servers.command("best")
@USER
@click.option(
    "--exclude",
    "excluded",
    type=click.UUID,
    multiple=True,
    metavar="ID",
    help="A server to leave out (the app's fallback after a failure); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the pick and the reasons as JSON.")
@pass_invocation
@library_errors
def servers_best(invocation: Invocation, user_id: uuid.UUID, excluded: tuple[uuid.UUID, ...], as_json: bool) -> None:
    """The server get_available_waha_server picks for the user's next session, and why.

    Exit 1 when no server has free capacity.

    \b
    Example:
      waha-db servers best --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      waha-db servers best --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --exclude 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
    """
    with invocation.transaction() as connection:
        pick = selection.best_server(connection, user_id, list(excluded))
    lines = [json.dumps(pick.as_json(), indent=2, ensure_ascii=False)] if as_json else pick.describe()
    for line in lines:
        click.echo(line)
    if pick.server is None:
        raise click.ClickException(pick.no_server(user_id))


@servers.command("test")
@click.argument("server_id", type=click.UUID, required=False, metavar="[ID]")
@click.option(
    "--user",
    "user_id",
    type=click.UUID,
    metavar="UUID",
    help="Test every active server of this user instead of one ID.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON (never the API key).")
@round_options
@pass_invocation
@library_errors
def servers_test(
    invocation: Invocation,
    server_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    as_json: bool,
    concurrency: int,
    per_host: int,
    deadline: float,
) -> None:
    """The form's [Testar Conexão]: GET {api_url}/api/server/version, and record the outcome.

    Sends X-Api-Key when the server has an api_key, waits at most the server's
    timeout per attempt, retries retry_attempts times with backoff. Prints
    reachable + latency + the WAHA version, or the reason in plain words (name does
    not resolve, connection refused, timed out, TLS error, API key rejected, not a
    WAHA server, server error). A server that answered is then asked, once each and
    at once, GET /health and GET /api/server/status: a 503 shutting_down is recorded
    as drained (ranked after the healthy servers while it cools down, not failed), a
    503 error as failing; where /health is refused (422 on WAHA Core before 2026.6.1)
    or absent, the version's answer decides. The outcome goes through
    report_waha_server_success / report_waha_server_failure, so a failing server
    cools down and get_available_waha_server offers the others first; the version,
    engine, tier and worker id a reachable server reports are recorded too
    (`servers list` shows them), with a warning when a WAHA CORE server older than
    2026.6.1 has max_sessions above 1, and when two active servers of a user report
    one worker. Redirects are not followed and proxy variables are ignored: no
    request goes anywhere but the server's URL (its path, with the endpoint
    appended; never its query). Every server is asked at once, within --deadline.
    Exit 1 when any server is unreachable or unhealthy (not when drained).

    \b
    Probes connect only where the network policy allows: never to link-local,
    unspecified, multicast or broadcast addresses; WAHA_DB_PROBE_DENY=private,loopback
    (or public) denies more. SSL_CERT_FILE / SSL_CERT_DIR add a CA to trust.

    \b
    Example:
      waha-db servers test 3f0c6a4e-1b2d-4c8e-9f00-5a6b7c8d9e0f
      waha-db servers test --user 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44 --json
    """
    if (server_id is None) == (user_id is None):
        raise click.UsageError("give either a server ID or --user UUID (all of that user's active servers)")
    options = health.round_options(concurrency=concurrency, per_host=per_host, deadline=deadline)
    with invocation.engine() as engine, health.autocommit_connection(engine) as connection:
        targets = health.load_servers(connection, server_ids=[server_id] if server_id else (), user_id=user_id)
        progress = terminal_progress(sys.stderr, quiet=as_json)
        checked = health.test_servers(connection, targets, options=options, progress=progress)
        shared = fleet_workers.shared_worker_warnings(connection, [item.server.user_id for item in checked])
    if as_json:
        click.echo(json.dumps([health.checked_as_json(item) for item in checked], indent=2, ensure_ascii=False))
    else:
        if not checked:
            click.echo(f"user {user_id} has no active servers")
        for item in checked:
            for line in health.describe_checked(item):
                click.echo(line)
    for warning in shared:
        click.echo(f"warning: {warning}", err=as_json)
    unreachable = [item.server.nome for item in checked if not item.probe.reachable]
    unhealthy = [item.server.nome for item in checked if item.probe.unhealthy]
    if unreachable or unhealthy:
        failing = [
            f"{len(names)} of {len(checked)} servers {state}: {', '.join(names)}"
            for state, names in (("unreachable", unreachable), ("unhealthy", unhealthy))
            if names
        ]
        raise click.ClickException("; ".join(failing))
