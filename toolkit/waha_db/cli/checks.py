"""The checks: `verify` (the CI command) and `bench` (waha_db.checks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from waha_db import database
from waha_db.checks import bench as benchmark
from waha_db.checks import fleet_bench as fleet_benchmark
from waha_db.checks import verify as verification
from waha_db.checks.pgtemp import find_server_binaries
from waha_db.cli.edge import Invocation, library_errors, pass_invocation


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of one line per check.")
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Also write the report as JUnit XML (for CI test reports).",
)
@click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WAHA_DB_PG_BIN",
    metavar="DIR",
    help="The bin directory (initdb, postgres) of the PostgreSQL the throwaway server runs, e.g. the major "
    "version of your production server; default $WAHA_DB_PG_BIN, else PATH and the newest "
    "/usr/lib/postgresql/*/bin.",
)
@pass_invocation
@library_errors
def verify(invocation: Invocation, as_json: bool, junit_xml: Path | None, pg_bin: Path | None) -> None:
    """Check that the migrations are sound: the CI command.

    Without a database URL it starts a throwaway PostgreSQL and checks on two fresh
    databases, plain and Supabase-like. With one it refuses a database that is not
    empty, runs there, and leaves it empty. Checks: one head; upgrade to head;
    metadata equals the migrated database; no drift from the recorded head catalog;
    security rules; the seed's examples and the selection rules; every revision
    up/down/up; downgrade to base; offline SQL equals online; sql/schema.sql fresh;
    the legacy conversion and back. One line per check; exit 1 if any fails. The
    last line names the PostgreSQL version the checks ran on.

    --pg-bin runs the throwaway server from other binaries: check the migrations on
    the major version of your production server before you upgrade it.

    \b
    Example:
      waha-db verify
      waha-db verify --pg-bin /usr/lib/postgresql/17/bin
      waha-db verify --junit-xml verify.xml
      waha-db --database-url postgresql://postgres@127.0.0.1:5432/waha_ci verify
    """
    url = invocation.url if invocation.given else None
    if url is None:
        pg_bin = find_server_binaries(pg_bin)
    elif click.get_current_context().get_parameter_source("pg_bin") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(
            "--pg-bin chooses the binaries of a throwaway server; with a database URL there is none to start"
        )

    def progress(check: verification.CheckResult) -> None:
        if not as_json:
            for line in check.describe():
                click.echo(line)

    if not as_json:
        click.echo(
            "waha-db verify: " + (f"a throwaway PostgreSQL from {pg_bin}" if url is None else database.display_url(url))
        )
    report = verification.verify(url, progress=progress, pg_bin=pg_bin if url is None else None)
    if junit_xml:
        junit_xml.write_text(report.junit_xml(), encoding="utf-8")
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.summary())
    if not report.passed:
        sys.exit(1)


@click.command()
@click.option(
    "--database-url",
    "bench_url",
    metavar="URL",
    help="Run on this database instead of a throwaway PostgreSQL: refused unless empty (nothing in schema public, "
    "as verify wants it), filled, then emptied again. DATABASE_URL is never used by bench.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="SERVERS",
    help="Servers in the table the selection is measured on (repeatable)  [default: 10000 and 1000000]",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=10,
    show_default=True,
    help="Duration of each selection measure, split into --windows windows.",
)
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Windows per selection measure; calls/s is their median.",
)
@click.option(
    "--fleet",
    is_flag=True,
    help="Measure the fleet commands instead: monitor --once and sessions reconcile --live over fake WAHA servers.",
)
@click.option(
    "--servers",
    "fleet_sizes",
    multiple=True,
    type=click.IntRange(min=1, max=5000),
    metavar="N",
    help="With --fleet: fake WAHA servers on 127.0.0.1 (repeatable)  [default: 1000]",
)
@click.option(
    "--toolkit",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With --fleet: measure the waha_db package in this folder (another checkout's toolkit/), to compare.",
)
@click.option(
    "--concurrency",
    "fleet_concurrency",
    type=click.IntRange(min=1),
    help="With --fleet: run both commands with this --concurrency (default: theirs).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
@library_errors
def bench(
    ctx: click.Context,
    bench_url: str | None,
    tables: tuple[int, ...],
    seconds: float,
    windows: int,
    fleet: bool,
    fleet_sizes: tuple[int, ...],
    toolkit: Path | None,
    fleet_concurrency: int | None,
    as_json: bool,
) -> None:
    """Measure server selection and session allocation; print the figures and the goals.

    On a throwaway PostgreSQL (the server binaries and pgbench must be installed),
    on tables of 10,000 and 1,000,000 servers: get_available_waha_server against
    its own query (the user a parameter of both) and SELECT 1, for users with 5,
    100 and 1,000 servers; then allocate_waha_session against the seed's
    three-statement flow with 8 and 32 clients, on one user and on 100 users.
    Takes about three minutes. Exit 1 when a goal is missed.

    With --fleet: N fake WAHA servers on 127.0.0.1 (10% accept and never answer, 5%
    refuse, the rest answer with a few sessions each; timeout 2 s, 2 retries), and
    `monitor --once` and `sessions reconcile --live` each run once over them, on a
    throwaway PostgreSQL: time against the ideal (the largest single server's
    budget), SQL statements sent, peak memory. About a minute for 1,000 servers.

    \b
    Example:
      waha-db bench
      waha-db bench --table 10000 --seconds 10
      waha-db bench --json > bench.json
      waha-db bench --fleet --servers 200 --servers 1000
    """
    if fleet:
        not_for_fleet = [
            flag
            for flag, name in (
                ("--database-url", "bench_url"),
                ("--table", "tables"),
                ("--seconds", "seconds"),
                ("--windows", "windows"),
            )
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if not_for_fleet:
            raise click.UsageError(
                f"{', '.join(not_for_fleet)} go without --fleet, which runs on its own throwaway PostgreSQL"
            )
        measured = fleet_benchmark.run_fleet_benchmark(
            sizes=tuple(fleet_sizes) or (fleet_benchmark.SERVERS,),
            toolkit=toolkit,
            concurrency=fleet_concurrency,
            progress=lambda message: click.echo(f"  {message}", err=True),
        )
        click.echo(json.dumps(measured.as_dict(), indent=2) if as_json else fleet_benchmark.render(measured))
        return
    if fleet_sizes or toolkit or fleet_concurrency:
        raise click.UsageError("--servers, --toolkit and --concurrency go with --fleet")
    invocation = ctx.find_object(Invocation)
    if bench_url is not None:
        invocation = ctx.obj = Invocation(bench_url)
    elif ctx.find_root().get_parameter_source("database_url") != click.core.ParameterSource.COMMANDLINE:
        invocation = None  # DATABASE_URL of the environment is never bench's: it fills the database
    url = invocation.url if invocation is not None else None
    result = benchmark.run_benchmark(
        url,
        table_servers=tables or benchmark.TABLE_SERVERS,
        seconds=seconds,
        windows=windows,
        progress=lambda message: click.echo(f"  {message}", err=True),
    )
    click.echo(json.dumps(result.as_dict(), indent=2, default=str) if as_json else benchmark.render(result))
    missed = [goal.name for goal in result.goals if not goal.met]
    if missed:
        raise click.ClickException(f"{len(missed)} goal(s) missed: {'; '.join(missed)}")
