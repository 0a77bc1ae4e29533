"""The transcript of docs/SUPABASE.md: waha-db with the real Supabase toolchain, on a throwaway PostgreSQL.

Runs the real tools, printing each command and its output:

1. `waha-db export supabase`, then `supabase db push` onto an empty Supabase-shaped
   database, `supabase migration list`, the catalog of the pushed database compared
   with a waha-db-upgraded one, `waha-db status --check`;
2. the hand-over: a push onto a database waha-db upgraded;
3. a legacy waha_config: the push refused without an owner, then with `--owner`;
4. `supabase db lint --level warning` and the exported pgTAP tests under `pg_prove`;
5. PgBouncer in transaction mode: psycopg's default prepared statements failing, then
   waha-db's commands, a monitor of 12 rounds and concurrent allocations through it.

With `--check`, it then compares every block docs/SUPABASE.md quotes from it (marked
`<!-- transcript: tools/supabase_transcript.py -->`) with what it printed, ports,
uuids, times and durations aside (tools/doc_blocks.py), and exits 1 on a difference:
CI runs it so, and the document cannot drift from the tools it describes.

Needs what .ci/run installs (the Supabase CLI in .ci/tools, pgTAP, pg_prove,
plpgsql_check, PgBouncer). Usage, from the repository root:

    .venv/bin/python tools/supabase_transcript.py [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

import psycopg  # noqa: E402

from tests.fleet.fake_waha import FakeWaha  # noqa: E402
from tests.support.pgbouncer import ThrowawayPgBouncer  # noqa: E402
from tests.support.supabase_cli import SupabaseCli, install_pgtap, pg_prove  # noqa: E402
from tools.doc_blocks import run_and_check  # noqa: E402
from waha_db.checks.legacy import LEGACY_V1_SQL  # noqa: E402
from waha_db.checks.pgtemp import ThrowawayPostgres  # noqa: E402
from waha_db.checks.supabase import install_auth_stub  # noqa: E402
from waha_db.database import conninfo, create_engine  # noqa: E402
from waha_db.fleet import monitor as fleet_monitor  # noqa: E402
from waha_db.lifecycle import migrate  # noqa: E402
from waha_db.lifecycle.catalog import SECTIONS, catalog_snapshot, diff_snapshots  # noqa: E402

DOCUMENT = REPOSITORY / "docs" / "SUPABASE.md"
TOOL = "tools/supabase_transcript.py"
WAHA_DB = str(Path(sys.executable).with_name("waha-db"))
OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"


def show(command: list[str], done: subprocess.CompletedProcess, *, keep_statement: bool = False) -> None:
    # A glob is shown as a shell expands it: unquoted.
    print("$ " + " ".join(part if "*" in part and " " not in part else shlex.quote(part) for part in command))
    output = (done.stdout + done.stderr).rstrip()
    if not keep_statement and "At statement:" in output:  # the CLI echoes the whole failing file after its error
        output = output[: output.index("At statement:")] + "At statement: 0 (the file's text, left out here)"
    print(output)
    print(f"[exit {done.returncode}]\n")


def waha_db(*arguments: str) -> None:
    done = subprocess.run([WAHA_DB, *arguments], capture_output=True, text=True)
    show(["waha-db", *arguments], done)


def supabase(cli: SupabaseCli, *arguments: str, workdir: Path, url=None) -> None:
    done = cli.run(*arguments, workdir=workdir, url=url, merged=True)
    show(["supabase", *done.args[1:]], done)  # the arguments as run, the password masked


def run_sql(url, sql: str, *params):
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        cursor = connection.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def supabase_database(server: ThrowawayPostgres, name: str):
    server.create_database(name)
    engine = create_engine(server.url(name))
    with engine.begin() as connection:
        install_auth_stub(connection)
    engine.dispose()
    return server.url(name)


def schema(url) -> dict:
    engine = create_engine(url)
    with engine.connect() as connection:
        snapshot = catalog_snapshot(connection)
    engine.dispose()
    return {
        section: (
            [n for n in items if not n.startswith("supabase_migrations")]
            if isinstance(items, list)
            else {n: v for n, v in items.items() if not n.startswith("supabase_migrations")}
        )
        for section, items in snapshot.items()
    }


def compare(pushed, upgraded) -> None:
    left, right = schema(pushed), schema(upgraded)
    differences = diff_snapshots(right, left, expected_label="upgraded", actual_label="pushed")
    counts = ", ".join(
        f"{sum(map(len, left[section].values()))} columns"
        if section == "columns"
        else f"{len(left[section])} {section}"
        for section in SECTIONS
    )
    print(f"# catalog of the pushed database vs the waha-db-upgraded one (supabase_migrations left out): {counts}")
    print("# differences: " + ("none" if not differences else "\n#   ".join(["", *differences])) + "\n")


def pooler_run(server: ThrowawayPostgres) -> None:
    print("## 5. Through PgBouncer 1.18 in transaction mode (4 server connections, used in turn)\n")
    direct = supabase_database(server, "pooled")
    with ThrowawayPgBouncer(server.port, pool_size=4) as pooler:
        url = pooler.url("pooled")
        pooled, straight = url.render_as_string(hide_password=True), direct.render_as_string(hide_password=True)
        print(f"# pooled URL: {pooled}; direct: {straight}\n")
        with psycopg.connect(conninfo(url), autocommit=True) as client:  # psycopg's default: prepare after 5 runs
            runs = 0
            try:
                while runs < 8:
                    runs += 1
                    client.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relkind = %s", ("r",))
                print("# psycopg's default client: no error")
            except psycopg.Error as error:
                print(f"# psycopg's default client (prepare_threshold=5), run {runs} of one statement: {error}\n")
        rendered = url.render_as_string(hide_password=False)
        waha_db("--database-url", rendered, "upgrade", "--yes")
        waha_db("--database-url", rendered, "status", "--check")
        user = str(uuid.uuid4())
        run_sql(direct, "INSERT INTO auth.users (id) VALUES (%s)", user)
        principal, backup = FakeWaha("healthy").start(), FakeWaha("error_500").start()
        try:
            for name, fake, priority in (("Principal", principal, "10"), ("Backup", backup, "5")):
                options = [
                    "--name",
                    name,
                    "--url",
                    fake.url,
                    "--priority",
                    priority,
                    "--max-sessions",
                    "6",
                    "--retries",
                    "0",
                ]
                waha_db("--database-url", rendered, "servers", "add", "--user", user, *options)
            waha_db("--database-url", rendered, "servers", "list", "--user", user)
            waha_db("--database-url", rendered, "servers", "best", "--user", user)
            stop, lines = threading.Event(), []

            def stop_after_12_rounds() -> None:  # each round records one more failure of Backup; at most two minutes
                for _ in range(12000):
                    if (
                        run_sql(direct, "SELECT coalesce(max(consecutive_failures), 0) FROM public.waha_server_health")[
                            0
                        ][0]
                        >= 12
                    ):
                        break
                    stop.wait(0.01)
                stop.set()

            threading.Thread(target=stop_after_12_rounds, daemon=True).start()
            engine = create_engine(url)
            stats = fleet_monitor.monitor(engine, interval=0.5, backoff=0, stop=stop, emit=lines.append)
            engine.dispose()
            print(
                # Not the rounds begun: one may begin as the stop is set, and end cancelled, recording nothing.
                f"# monitor through the pooler: {stats.probes} probes recorded, "
                f"{stats.state_changes} state change(s), {stats.reconnects} reconnects; lines:"
            )
            print("\n".join(f"#   {line}" for line in lines) + "\n")
        finally:
            principal.stop()
            backup.stop()
        claims = json.dumps({"sub": user, "role": "authenticated"})

        def client(index: int) -> list[str]:
            outcomes = []
            with psycopg.connect(conninfo(url), autocommit=True, prepare_threshold=None) as connection:
                for number in range(4):
                    try:
                        with connection.transaction():
                            connection.execute("SET LOCAL ROLE authenticated")
                            connection.execute(
                                "SELECT pg_catalog.set_config('request.jwt.claims', %s, true)", (claims,)
                            )
                            connection.execute("SELECT * FROM public.get_available_waha_server(%s)", (user,))
                            connection.execute(
                                "SELECT * FROM public.allocate_waha_session(%s, %s)", (user, f"c{index}-{number}")
                            )
                        outcomes.append("allocated")
                    except psycopg.Error as error:
                        outcomes.append(error.sqlstate)
            return outcomes

        with ThreadPoolExecutor(6) as pool:
            outcomes = [outcome for outcomes in pool.map(client, range(6)) for outcome in outcomes]
        counters = run_sql(
            direct, "SELECT nome, sessions_ativas, max_sessions FROM public.waha_servers ORDER BY prioridade DESC"
        )
        print(
            f"# 6 signed-in clients x 4 allocations through the pooler: {outcomes.count('allocated')} allocated, "
            f"{outcomes.count('WAH10')} refused with WAH10 (no free slot); counters {counters}\n"
        )


def transcript() -> None:
    """The whole run, printed; in a scratch folder of its own, so the paths printed are `app/...`."""
    cli = SupabaseCli()
    bouncer = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"# Supabase CLI {cli.version()}, {bouncer}\n")
    with ThrowawayPostgres() as server, tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        workdir = Path("app")
        workdir.mkdir()
        print("## 1. Export, push, list, compare\n")
        waha_db("export", "supabase", "--workdir", str(workdir))
        pushed = supabase_database(server, "pushed")
        supabase(cli, "db", "push", "--yes", workdir=workdir, url=pushed)
        supabase(cli, "migration", "list", workdir=workdir, url=pushed)
        upgraded = supabase_database(server, "upgraded")
        engine = create_engine(upgraded)
        migrate.upgrade(engine)
        engine.dispose()
        compare(pushed, upgraded)
        waha_db("--database-url", pushed.render_as_string(hide_password=False), "status", "--check")

        print("## 2. Hand-over: push onto a database waha-db upgraded\n")
        supabase(cli, "db", "push", "--yes", workdir=workdir, url=upgraded)
        supabase(cli, "migration", "list", workdir=workdir, url=upgraded)

        print("## 3. A legacy waha_config through the push\n")
        legacy = supabase_database(server, "legacy")
        run_sql(legacy, LEGACY_V1_SQL)
        run_sql(legacy, "INSERT INTO auth.users (id) VALUES (%s)", OWNER)
        supabase(cli, "db", "push", "--yes", workdir=workdir, url=legacy)
        print(
            f"# supabase_migrations.schema_migrations rows after the refusal: "
            f"{run_sql(legacy, 'SELECT count(*) FROM supabase_migrations.schema_migrations')[0][0]}; "
            f"alembic_version: {run_sql(legacy, 'SELECT to_regclass($$public.alembic_version$$)')[0][0]}\n"
        )
        owned = Path("owned")
        owned.mkdir()
        waha_db("export", "supabase", "--workdir", str(owned), "--owner", OWNER)
        supabase(cli, "db", "push", "--yes", workdir=owned, url=legacy)
        converted = run_sql(legacy, "SELECT nome, user_id::text, api_url, prioridade FROM public.waha_servers")
        print(f"# servers: {converted}\n")

        print("## 4. Lint and pgTAP\n")
        supabase(cli, "db", "lint", "--level", "warning", "--fail-on", "warning", workdir=workdir, url=pushed)
        engine = create_engine(pushed)
        with engine.begin() as connection:
            install_pgtap(connection)
        engine.dispose()
        pattern = workdir / "supabase" / "tests" / "waha_*.sql"
        done = pg_prove(pushed, sorted(Path().glob(str(pattern))))
        show(["pg_prove", str(pattern)], done)

        pooler_run(server)
        os.chdir(REPOSITORY)
    cli.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"compare the blocks {DOCUMENT.name} quotes with the run")
    arguments = parser.parse_args()
    os.environ.pop("DATABASE_URL", None)
    if not arguments.check:
        transcript()
        return 0
    return run_and_check(DOCUMENT, TOOL, transcript, REPOSITORY)


if __name__ == "__main__":
    sys.exit(main())
