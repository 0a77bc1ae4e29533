"""`waha-db bench --fleet`: a monitor round and a live reconcile over a fleet of fake WAHA servers.

N fake servers on 127.0.0.1 (waha_db.checks.fake_fleet, one child process): by
default 1,000, of which 10% accept and never answer, 5% refuse connections, and
the rest answer in WAHA's shapes with a few sessions each. Ten servers per user,
each with `timeout` 2 s and `retry_attempts` 2, on a throwaway PostgreSQL.

Measured, each in a child process that runs the real command line
(`waha-db monitor --once`, `waha-db sessions reconcile --live`):
- the wall time, against the ideal: the largest single server's budget (its
  timeout times its attempts, plus the back-off between them), since a round that
  probes every server at once can end no sooner;
- the SQL statements the command sent (SQLAlchemy's cursor events, counted in the
  child);
- the child's peak resident memory (VmHWM).

`concurrency` is passed to both commands as `--concurrency`. `toolkit` measures
another copy of waha-db (the folder that holds its `waha_db`
package, e.g. a checkout's toolkit/ of an earlier release), to compare before and
after on the same machine. Everything is bounded: the fake servers stop when the
benchmark ends (or after `--lifetime`), and each command is killed if it runs past
its limit, which is then reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from waha_db.checks.fake_fleet import kinds_for
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import conninfo, create_engine, display_url
from waha_db.errors import UserError
from waha_db.lifecycle import migrate

SERVERS = 1_000
HANG_SHARE = 0.10
REFUSE_SHARE = 0.05
SERVERS_PER_USER = 10
TIMEOUT_SECONDS = 2
RETRY_ATTEMPTS = 2
# The back-off of waha_db.fleet.probe: 0.5 s doubling, capped at 5 s.
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
COMMAND_LIMIT_SECONDS = 900.0
COMMANDS = {
    "monitor --once": ["monitor", "--once"],
    "sessions reconcile --live": ["sessions", "reconcile", "--live"],
}

# Runs in the child: counts the statements, runs the command line, reports time and memory.
DRIVER = r"""
import json, sys, time
import sqlalchemy as sa
counted = {"statements": 0}
def count(*args, **kwargs):
    counted["statements"] += 1
sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
from waha_db import cli
started = time.perf_counter()
status = 0
try:
    cli.main(sys.argv[2:], standalone_mode=False)
except SystemExit as exit:
    status = exit.code or 0
except Exception as error:
    status = getattr(error, "exit_code", 1) if hasattr(error, "show") else repr(error)
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
with open(sys.argv[1], "w") as report:
    json.dump({"seconds": seconds, "statements": counted["statements"], "peak_kib": peak, "status": status}, report)
"""


class FleetBenchError(UserError):
    """The fleet benchmark cannot run as asked."""


def single_budget(timeout: float, retry_attempts: int, backoff: float = BACKOFF_SECONDS) -> float:
    """The longest one server can take: every attempt times out, with the back-off between attempts."""
    pauses = sum(min(backoff * 2**attempt, MAX_BACKOFF_SECONDS) for attempt in range(retry_attempts))
    return timeout * (retry_attempts + 1) + pauses


@dataclass
class CommandFigures:
    command: str
    servers: int
    seconds: float | None
    ideal_seconds: float
    statements: int | None
    peak_mib: float | None
    status: object = 0
    note: str = ""

    @property
    def versus_ideal(self) -> float | None:
        return None if self.seconds is None else self.seconds / self.ideal_seconds


@dataclass
class FleetBenchResult:
    toolkit: str
    postgres: str
    servers: dict = field(default_factory=dict)  # size -> {kind: count}
    figures: list[CommandFigures] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "toolkit": self.toolkit,
            "postgres": self.postgres,
            "servers": self.servers,
            "figures": [asdict(item) | {"versus_ideal": item.versus_ideal} for item in self.figures],
        }


def _fill(url, ports: list[dict], timeout: int, retry_attempts: int) -> None:
    """Ten servers per user, one per fake port, in one statement."""
    users = [uuid.uuid4() for _ in range(max(1, (len(ports) + SERVERS_PER_USER - 1) // SERVERS_PER_USER))]
    rows = [
        (users[index // SERVERS_PER_USER], f"bench-{index:04d}-{item['kind']}", f"http://127.0.0.1:{item['port']}")
        for index, item in enumerate(ports)
    ]
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO public.waha_servers (user_id, nome, api_url, timeout, retry_attempts, max_sessions) "
            "SELECT user_id, nome, api_url, %s, %s, 50 FROM unnest(%s::uuid[], %s::text[], %s::text[]) "
            "AS item(user_id, nome, api_url)",
            (
                timeout,
                retry_attempts,
                [row[0] for row in rows],
                [row[1] for row in rows],
                [row[2] for row in rows],
            ),
        )


def _run_command(url, arguments: list[str], toolkit: Path | None, limit: float) -> dict:
    environment = dict(os.environ)
    environment.pop("DATABASE_URL", None)
    if toolkit is not None:
        environment["PYTHONPATH"] = str(toolkit) + os.pathsep + environment.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="waha-fleet-bench-") as folder:
        report = Path(folder) / "report.json"
        command = [sys.executable, "-c", DRIVER, str(report), "--database-url", str(url.render_as_string(False))]
        try:
            subprocess.run(
                command + arguments,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"seconds": None, "statements": None, "peak_kib": None, "status": f"killed after {limit:g} s"}
        if not report.exists():
            return {"seconds": None, "statements": None, "peak_kib": None, "status": "the command died"}
        return json.loads(report.read_text())


def run_fleet_benchmark(
    *,
    sizes: tuple[int, ...] = (SERVERS,),
    hang_share: float = HANG_SHARE,
    refuse_share: float = REFUSE_SHARE,
    timeout: int = TIMEOUT_SECONDS,
    retry_attempts: int = RETRY_ATTEMPTS,
    toolkit: Path | None = None,
    concurrency: int | None = None,
    limit: float = COMMAND_LIMIT_SECONDS,
    progress=lambda message: None,
) -> FleetBenchResult:
    """Measure `monitor --once` and `sessions reconcile --live` at each fleet size, on a throwaway PostgreSQL."""
    if toolkit is not None and not (toolkit / "waha_db" / "__init__.py").is_file():
        raise FleetBenchError(f"{toolkit} holds no waha_db package: give the folder that holds waha_db/ (a toolkit/)")
    if not 0 <= hang_share + refuse_share <= 1:
        raise FleetBenchError("the hanging and refusing shares must add up to between 0 and 1")
    ideal = single_budget(timeout, retry_attempts)
    progress("starting a throwaway PostgreSQL")
    with ThrowawayPostgres() as server:
        result = FleetBenchResult(toolkit=str(toolkit or Path(__file__).resolve().parents[2]), postgres=server.version)
        for size in sizes:
            url = server.url(server.create_database(f"waha_fleet_{size}"))
            engine = create_engine(url)
            try:
                migrate.upgrade(engine, "head")
            finally:
                engine.dispose()
            kinds = kinds_for(size, hang_share, refuse_share)
            result.servers[str(size)] = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
            progress(f"{size} fake WAHA servers on 127.0.0.1, {display_url(url)}")
            fleet = subprocess.Popen(
                [sys.executable, "-m", "waha_db.checks.fake_fleet", "--servers", str(size)]
                + ["--hang", str(hang_share), "--refuse", str(refuse_share), "--lifetime", str(limit * 3)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                announced = fleet.stdout.readline()
                if not announced:
                    raise FleetBenchError(f"the {size} fake WAHA servers did not start (see the message above)")
                ports = json.loads(announced)["servers"]
                _fill(url, ports, timeout, retry_attempts)
                for name, arguments in COMMANDS.items():
                    if concurrency is not None:
                        arguments = [*arguments, "--concurrency", str(concurrency)]
                        name = f"{name} --concurrency {concurrency}"
                    progress(f"{size} servers: {name}")
                    figures = _run_command(url, arguments, toolkit, limit)
                    result.figures.append(
                        CommandFigures(
                            command=name,
                            servers=size,
                            seconds=figures["seconds"],
                            ideal_seconds=ideal,
                            statements=figures["statements"],
                            peak_mib=None if figures["peak_kib"] is None else figures["peak_kib"] / 1024,
                            status=figures["status"],
                        )
                    )
            finally:
                fleet.stdin.close()
                try:
                    fleet.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    fleet.kill()
                    fleet.wait()
                fleet.stdout.close()
    return result


def render(result: FleetBenchResult) -> str:
    """The figures as a Markdown table (the form docs/BENCHMARKS.md keeps)."""
    lines = [
        f"waha-db at {result.toolkit}; PostgreSQL {result.postgres}; fake servers (hang/refuse/healthy): "
        + "; ".join(f"{size}: {kinds}" for size, kinds in result.servers.items()),
        "",
        "| servers | command | time | ideal | time / ideal | statements | peak memory | exit |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for item in result.figures:
        seconds = "-" if item.seconds is None else f"{item.seconds:.1f} s"
        ratio = "-" if item.versus_ideal is None else f"{item.versus_ideal:.2f}x"
        statements = "-" if item.statements is None else str(item.statements)
        memory = "-" if item.peak_mib is None else f"{item.peak_mib:.0f} MiB"
        lines.append(
            f"| {item.servers} | `{item.command}` | {seconds} | {item.ideal_seconds:g} s | {ratio} | "
            f"{statements} | {memory} | {item.status} |"
        )
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - a convenience for measuring another checkout
    import argparse

    parser = argparse.ArgumentParser(description="The fleet benchmark (as `waha-db bench --fleet`).")
    parser.add_argument("--servers", type=int, action="append")
    parser.add_argument("--toolkit", type=Path)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    result = run_fleet_benchmark(
        sizes=tuple(arguments.servers or [SERVERS]),
        toolkit=arguments.toolkit,
        concurrency=arguments.concurrency,
        progress=lambda message: print(f"  {message}", file=sys.stderr, flush=True),
    )
    print(json.dumps(result.as_dict(), indent=2) if arguments.json else render(result))


if __name__ == "__main__":  # pragma: no cover
    main()
