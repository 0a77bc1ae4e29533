"""The transcript of issue 11 ("every message a DBA reads is true"), on a throwaway PostgreSQL.

Runs the real `waha-db` console script against databases of one throwaway server on
127.0.0.1 and prints each command, its output and its exit status, one section per
numbered item of the issue:

1. upgrade again after `downgrade 0004` and an edit of waha_config (and another --owner);
2. an upgrade that waits behind an open transaction on waha_config: the application's
   SELECT on that table is measured while the upgrade retries;
3. two upgrades started at once (another --owner in the second);
4. the migrations' advisory lock held by a session that never lets go (a killed run);
5. every `next:` of `status` in the states of the issue, run as printed;
6. the seed's GRANT ALL: status --check, its statements, `repair`;
7. a database URL with an unencoded @ in its password (refused before any look-up);
8. allocate_waha_session by name: a released name, a name occupying elsewhere, a race.

Legacy rows name example hosts (https://waha.legacy.example): no command that probes a
server (servers test, monitor, sessions reconcile --live) is run.

Usage: python scripts/trust_transcript.py   (from the repository root, after `pip install -e .`)
"""

from __future__ import annotations

import collections
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from waha_db.checks.legacy import LEGACY_V1_SQL  # noqa: E402
from waha_db.checks.pgtemp import ThrowawayPostgres  # noqa: E402
from waha_db.database import DatabaseUrlError, conninfo, parse_url  # noqa: E402
from waha_db.lifecycle.locks import MIGRATION_LOCK_KEY  # noqa: E402

USER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
OTHER = "5e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b"
WAHA_DB = str(Path(sys.executable).with_name("waha-db"))
SHOW_SERVERS = "SELECT nome, api_url, api_key, timeout, user_id FROM public.waha_servers ORDER BY nome"


def run(environment: dict, *arguments: str, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run waha-db, print the command, its output and exit status; return them."""
    print(f"$ waha-db {shlex.join(arguments)}")
    done = subprocess.run([*prefix, WAHA_DB, *arguments], env=environment, capture_output=True, text=True)
    output = (done.stdout + done.stderr).rstrip()
    print(output)
    print(f"[exit {done.returncode}]\n")
    return done.returncode, output


def start(environment: dict, *arguments: str) -> subprocess.Popen:
    """Start waha-db in the background (its output is printed by `finish`)."""
    return subprocess.Popen(
        [WAHA_DB, *arguments], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen, label: str, timeout: float = 60) -> str:
    output, _ = process.communicate(timeout=timeout)
    print(f"$ waha-db {shlex.join(process.args[1:])}   # {label}")
    print(output.rstrip())
    print(f"[exit {process.returncode}]\n")
    return output


class Database:
    """One database of the throwaway server: its URL, the environment naming it, SQL on it."""

    def __init__(self, server: ThrowawayPostgres, name: str, sql: str = "") -> None:
        self.name = server.create_database(name)
        self.url = server.url(self.name)
        self.environment = dict(os.environ, DATABASE_URL=self.url.render_as_string(hide_password=False))
        if sql:
            self.sql(sql)

    def connect(self, **settings) -> psycopg.Connection:
        return psycopg.connect(conninfo(self.url), **settings)

    def sql(self, statements: str, parameters=None) -> list[tuple]:
        with self.connect(autocommit=True) as connection:
            cursor = connection.execute(statements, parameters)
            return cursor.fetchall() if cursor.description else []

    def show(self, query: str, parameters=None) -> None:
        print(f"sql> {query}")
        for row in self.sql(query, parameters):
            print("     " + " | ".join("NULL" if value is None else str(value) for value in row))
        print()


def wait_for(condition, what: str, seconds: float = 20) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def queued_on_waha_config(database: Database) -> bool:
    return bool(
        database.sql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation' "
            "AND relation = 'public.waha_config'::regclass"
        )[0][0]
    )


def advisory_holders(database: Database) -> list[tuple]:
    return database.sql(
        "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        f"WHERE l.locktype = 'advisory' AND l.granted AND l.objid = {MIGRATION_LOCK_KEY} ORDER BY 1"
    )


def next_command(status_output: str) -> list[str]:
    """The command of status's `next:` line as a DBA runs it: a real owner for UUID, --yes for the question."""
    line = next(line for line in status_output.splitlines() if line.startswith("next:"))
    quoted = re.search(r"`(waha-db [^`]+)`", line)
    command = quoted.group(1) if quoted else line.removeprefix("next:").strip()
    words = shlex.split(command)
    assert words[0] == "waha-db", line
    words = [USER if word == "UUID" else word for word in words[1:]]
    return [*words, "--yes"] if words[0] in ("upgrade", "downgrade", "adopt", "repair") else words


def item_1(server: ThrowawayPostgres) -> None:
    print("## 1. Upgrade again after a rollback and an edit of waha_config\n")
    database = Database(server, "item1", LEGACY_V1_SQL)
    env = database.environment
    run(env, "upgrade", "--owner", USER, "--yes")
    run(env, "downgrade", "0004", "--yes")
    database.show(SHOW_SERVERS)
    print("sql> UPDATE waha_config SET api_url='https://new-legacy.example', api_key='rotated-key'\n")
    database.sql("UPDATE public.waha_config SET api_url = 'https://new-legacy.example', api_key = 'rotated-key'")
    run(env, "status")
    run(env, "upgrade", "--owner", USER, "--yes")
    _, output = run(env, "upgrade", "--owner", OTHER, "--yes")
    database.show(SHOW_SERVERS)
    database.show("SELECT api_url, api_key FROM public.waha_config")
    chosen = re.search(r"keep waha_config's values: (UPDATE .*;)", output)
    if chosen:
        print(f"sql> {chosen.group(1)}   # the first choice the refusal gives\n")
        database.sql(chosen.group(1))
        run(env, "upgrade", "--yes")
        database.show(SHOW_SERVERS)


def item_2(server: ThrowawayPostgres) -> None:
    print("## 2. An upgrade waiting behind an open transaction on waha_config; the app's SELECT measured\n")
    database = Database(server, "item2", LEGACY_V1_SQL)
    env = database.environment
    run(env, "upgrade", "0004", "--yes")

    def measure_while(process: subprocess.Popen) -> dict:
        """The app's SELECTs on waha_config, one after another while the upgrade runs: each one's wait."""
        waits: list[float] = []
        queued_waits: list[float] = []
        with database.connect(autocommit=True) as application:
            while process.poll() is None:
                queued = queued_on_waha_config(database)
                began = time.monotonic()
                try:
                    application.execute("SELECT api_url FROM public.waha_config").fetchall()
                    moved = False
                except psycopg.errors.UndefinedTable:
                    moved = True  # converted and moved to waha_legacy: a V1 app's reads end here
                waits.append(time.monotonic() - began)
                if queued:
                    queued_waits.append(waits[-1])
                if moved:
                    break
                time.sleep(0.05)
        return {"selects": len(waits), "longest": max(waits, default=0.0), "queued": queued_waits}

    def upgrade_behind_a_reader(lock_timeout: str):
        """An open transaction that has read waha_config, and an upgrade queued behind it."""
        blocker = database.connect()
        blocker.execute("SELECT * FROM public.waha_config").fetchall()
        began = time.monotonic()
        upgrading = start(env, "upgrade", "--owner", USER, "--yes", "--lock-timeout", lock_timeout)
        wait_for(lambda: queued_on_waha_config(database), "the upgrade's lock request queued on waha_config")
        return blocker, began, upgrading

    print("# an open transaction reads waha_config and stays open (BEGIN; SELECT * FROM waha_config;)\n")
    blocker, began, upgrading = upgrade_behind_a_reader("8")
    queued_at = time.monotonic()
    figures = measure_while(upgrading)
    took, waiting = time.monotonic() - began, time.monotonic() - queued_at
    output = finish(upgrading, "while the transaction stays open")
    blocker.rollback()
    blocker.close()
    queued = figures["queued"]
    print(
        f"measured: the upgrade gave up {took:.1f} s after it was started ({waiting:.1f} s after its first lock "
        f"request queued); meanwhile the app ran {figures['selects']} SELECTs on "
        f"waha_config one after another, the longest waited {figures['longest']:.2f} s; those started while the "
        f"upgrade's lock request was queued ({len(queued)}) waited "
        f"{', '.join(f'{w:.2f}' for w in queued) or '-'} s"
    )
    print(f"measured: 'converted now' in the failed run's output: {'converted now' in output}\n")
    database.show("SELECT version_num FROM public.alembic_version")

    print("# the same, but the transaction ends after 3 s: the upgrade goes through\n")
    blocker, began, upgrading = upgrade_behind_a_reader("30")
    timer = threading.Timer(3.0, blocker.rollback)
    timer.start()
    figures = measure_while(upgrading)
    took = time.monotonic() - began
    timer.join()
    blocker.close()
    finish(upgrading, "the transaction ends after 3 s")
    print(
        f"measured: the upgrade succeeded after {took:.1f} s; the app's longest SELECT on waha_config waited "
        f"{figures['longest']:.2f} s ({figures['selects']} SELECTs)\n"
    )


def item_3(server: ThrowawayPostgres) -> None:
    print("## 3. Two upgrades started at the same time (the second names another owner)\n")
    database = Database(server, "item3", LEGACY_V1_SQL)
    env = database.environment
    print(
        "# so that both really start together, a session holds the migrations' advisory lock while they start, "
        "and lets it go once both are connected\n"
    )
    holder = database.connect()
    holder.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    others = (
        "SELECT pid, application_name, state, wait_event_type, wait_event FROM pg_stat_activity "
        f"WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), {holder.info.backend_pid}) ORDER BY pid"
    )
    first = start(env, "upgrade", "--owner", USER, "--yes", "--lock-timeout", "30")
    second = start(env, "upgrade", "--owner", OTHER, "--yes", "--lock-timeout", "30")
    wait_for(lambda: len(database.sql(others)) == 2, "both upgrades connected")
    time.sleep(1.0)
    print(f"measured: the two runs in pg_stat_activity, before the lock is let go: {database.sql(others)}\n")
    holder.rollback()
    holder.close()
    finish(first, "first, owner USER")
    finish(second, "second, owner OTHER")
    database.show(SHOW_SERVERS)


def item_4(server: ThrowawayPostgres) -> None:
    print("## 4. The migrations' advisory lock kept by the backend of a killed upgrade\n")
    database = Database(server, "item4", LEGACY_V1_SQL)
    env = database.environment
    print(
        f"# a session named 'waha-db upgrade' takes pg_advisory_xact_lock({MIGRATION_LOCK_KEY}) in an open "
        "transaction and never ends it (the backend of a run killed with kill -9)\n"
    )
    holder = psycopg.connect(conninfo(database.url), application_name="waha-db upgrade")
    holder.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    began = time.monotonic()
    _, output = run(env, "upgrade", "--owner", USER, "--yes", "--lock-timeout", "3")
    print(f"measured: the run ended after {time.monotonic() - began:.1f} s (--lock-timeout 3)\n")
    statement = re.search(r"SELECT pg_catalog\.pg_terminate_backend\(\d+\);", output)
    if statement:
        print(f"sql> {statement.group(0)}   # as the message says\n")
        database.sql(statement.group(0))
    holder.close()
    run(env, "upgrade", "--owner", USER, "--yes")


def item_5(server: ThrowawayPostgres) -> None:
    print("## 5. Every next: of status, run as printed (UUID = the owner, --yes for the question)\n")

    def follow(database: Database, label: str) -> None:
        """Run what status says to run; when it explains a refusal, apply the fixes it gives and run it again."""
        print(f"# {label}\n")
        _, output = run(database.environment, "status")
        command = next_command(output)
        code, _ = run(database.environment, *command)
        fixes = [line.strip().split("  --")[0] for line in output.splitlines() if line.strip().startswith("UPDATE ")]
        if code and fixes:
            for statement in fixes:
                print(f"sql> {statement}   # the fix status gave")
                database.sql(statement)
            print()
            run(database.environment, *command)

    rolled_back = Database(server, "item5a", LEGACY_V1_SQL)
    subprocess.run([WAHA_DB, "upgrade", "--owner", USER, "--yes"], env=rolled_back.environment, capture_output=True)
    run(rolled_back.environment, "downgrade", "0004", "--yes")
    follow(rolled_back, "after downgrade 0004 (the converted server kept)")
    follow(
        Database(
            server,
            "item5b",
            LEGACY_V1_SQL + "UPDATE public.waha_config SET api_url = 'waha.example.com:3000', timeout = -5;",
        ),
        "legacy values V2.1 refuses: api_url 'waha.example.com:3000', timeout -5",
    )
    follow(
        Database(server, "item5c", LEGACY_V1_SQL + "UPDATE public.waha_config SET timeout = -5;"),
        "only the timeout is wrong (-5)",
    )
    follow(
        Database(
            server,
            "item5d",
            LEGACY_V1_SQL + "ALTER TABLE public.waha_config ALTER COLUMN timeout TYPE bigint;"
            "UPDATE public.waha_config SET timeout = 99999999999;",
        ),
        "a bigint timeout of 99999999999",
    )


def truncate_as_authenticated(database: Database) -> None:
    """TRUNCATE waha_sessions as a signed-in user, in a transaction rolled back."""
    print("sql> BEGIN; SET ROLE authenticated; TRUNCATE public.waha_sessions; ROLLBACK;")
    with database.connect() as connection:
        before = connection.execute("SELECT count(*) FROM public.waha_sessions").fetchone()[0]
        try:
            connection.execute("SET ROLE authenticated")
            connection.execute("TRUNCATE public.waha_sessions")
            connection.execute("RESET ROLE")
            after = connection.execute("SELECT count(*) FROM public.waha_sessions").fetchone()[0]
            print(f"     TRUNCATE succeeded: waha_sessions {before} row(s) -> {after} (rolled back)\n")
        except psycopg.Error as error:
            print(f"     ERROR: {error.diag.message_primary}\n")
        connection.rollback()


def item_6(server: ThrowawayPostgres) -> None:
    print("## 6. The seed's GRANT ALL ... TO authenticated ('Atualizar permissões')\n")
    database = Database(server, "item6")
    env = database.environment
    subprocess.run([WAHA_DB, "upgrade", "--yes"], env=env, check=True, capture_output=True)
    server_id = add_server(database, "Servidor Principal", "http://127.0.0.1:18001", priority=10, max_sessions=5)
    database.sql("SELECT public.allocate_waha_session(%s, 'loja-01')", (USER,))
    print(
        "sql> GRANT ALL ON public.waha_servers TO authenticated, service_role; "
        "GRANT ALL ON public.waha_sessions TO authenticated, service_role;\n"
    )
    database.sql("GRANT ALL ON public.waha_servers TO authenticated, service_role")
    database.sql("GRANT ALL ON public.waha_sessions TO authenticated, service_role")
    truncate_as_authenticated(database)
    run(env, "status", "--check")
    run(env, "repair", "--yes")
    run(env, "status", "--check")
    truncate_as_authenticated(database)
    assert server_id


def item_7(server: ThrowawayPostgres) -> None:
    print("## 7. A database URL with an unencoded @ in its password\n")
    url = "postgresql://postgres:Hun@ter2@127.0.0.1/app"
    # Run it only once it is known to be refused before anything reads its host (no DNS look-up).
    try:
        parse_url(url)
    except DatabaseUrlError as error:
        print(f"# checked in-process first: parse_url refuses it before reading the host ({type(error).__name__})\n")
    else:
        print("# NOT RUN: parse_url accepted the URL, so the command could look up the password's tail in DNS\n")
        return
    # And without a network of its own where one can be made (root: unshare -n), so no name can go out.
    jail = ("unshare", "-n") if shutil.which("unshare") and os.geteuid() == 0 else ()
    if jail:
        print("# run in a network namespace with no interface up (unshare -n): nothing can leave the machine\n")
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    run(environment, "--database-url", url, "status", prefix=jail)
    run(dict(environment, DATABASE_URL=url), "status", prefix=jail)


def add_server(database: Database, name: str, url: str, *, priority: int, max_sessions: int) -> uuid.UUID:
    return database.sql(
        "INSERT INTO public.waha_servers (id, user_id, nome, api_url, prioridade, max_sessions) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (uuid.uuid5(uuid.NAMESPACE_URL, name), USER, name, url, priority, max_sessions),
    )[0][0]


def item_8(server: ThrowawayPostgres) -> None:
    print("## 8. allocate_waha_session by name\n")
    database = Database(server, "item8")
    subprocess.run([WAHA_DB, "upgrade", "--yes"], env=database.environment, check=True, capture_output=True)
    principal = add_server(database, "Principal", "http://127.0.0.1:18001", priority=10, max_sessions=3)
    backup = add_server(database, "Backup", "http://127.0.0.1:18002", priority=5, max_sessions=3)
    print(f"# servers of user {USER}: Principal {principal} (prioridade 10, max 3), Backup {backup} (5, max 3)\n")
    sessions = (
        "SELECT s.session_name, v.nome, s.status FROM public.waha_sessions s "
        "JOIN public.waha_servers v ON v.id = s.waha_server_id ORDER BY s.session_name, v.nome"
    )
    counters = "SELECT nome, sessions_ativas, max_sessions FROM public.waha_servers ORDER BY nome"

    def call(statement: str, parameters) -> None:
        print(f"sql> {statement % tuple(repr(str(p)) for p in parameters)}")
        try:
            rows = database.sql(statement, parameters)
            print("     " + " | ".join(str(value) for value in rows[0]) + "\n")
        except psycopg.Error as error:
            print(f"     ERROR [{error.sqlstate}]: {error.diag.message_primary}\n")

    allocate = (
        "SELECT s.session_name, v.nome, s.status, s.id FROM public.allocate_waha_session(%s, %s) s "
        "JOIN public.waha_servers v ON v.id = s.waha_server_id"
    )
    call(allocate, (USER, "c1_1"))
    session_id = database.sql(
        "SELECT id FROM public.waha_sessions WHERE session_name = 'c1_1' AND user_id = %s", (USER,)
    )[0][0]
    call("SELECT public.release_waha_session(%s)", (session_id,))
    print("# c1_1 is released (a STOPPED row on Principal); Principal has free slots\n")
    call(allocate, (USER, "c1_1"))
    print("# the same name again while it occupies a slot\n")
    call(allocate, (USER, "c1_1"))
    print("# a new name c1_2 is allocated, then allocated again excluding the server where it occupies a slot\n")
    call(allocate, (USER, "c1_2"))
    call(
        "SELECT s.session_name, v.nome, s.status FROM public.allocate_waha_session(%s, %s, ARRAY[%s]::uuid[]) s "
        "JOIN public.waha_servers v ON v.id = s.waha_server_id",
        (USER, "c1_2", principal),
    )
    database.show(sessions)

    print("# 12 connections call allocate_waha_session(USER, 'c2_1') at the same moment\n")
    barrier = threading.Barrier(12)
    answers: list[str] = []

    def allocate_once() -> None:
        with database.connect(autocommit=True) as connection:
            barrier.wait()
            try:
                answers.append(
                    str(
                        connection.execute(
                            "SELECT id FROM public.allocate_waha_session(%s, 'c2_1')", (USER,)
                        ).fetchone()[0]
                    )
                )
            except psycopg.Error as error:
                answers.append(f"ERROR [{error.sqlstate}] {error.diag.message_primary}")

    threads = [threading.Thread(target=allocate_once) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    tally = sorted(collections.Counter(answers).items())
    print(f"measured: 12 calls, {len(tally)} distinct answer(s): " + "; ".join(f"{n} x {a}" for a, n in tally) + "\n")
    database.show(sessions)
    database.show(counters)


class PerThreadOutput:
    """sys.stdout that keeps what each lane's thread prints apart, so lanes can run at once and print in order."""

    def __init__(self, real) -> None:
        self.real = real
        self.buffers: dict[int, list[str]] = {}

    def write(self, text: str) -> int:
        buffer = self.buffers.get(threading.get_ident())
        if buffer is None:
            self.real.write(text)
        else:
            buffer.append(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()


def main() -> None:
    began = time.monotonic()
    # Two lanes at once (each waha-db run spends about 1.5 s starting): the lock waits, and the rest.
    lanes = {"locks": (item_2, item_3, item_4, item_1), "others": (item_5, item_6, item_7, item_8)}
    output = PerThreadOutput(sys.stdout)
    sections: dict = {}
    failures: list[BaseException] = []
    with ThrowawayPostgres() as server:
        # Roles belong to the server, not to a database: made once here, so that the two lanes'
        # upgrades of their own databases do not both create them at the same moment.
        with psycopg.connect(conninfo(server.url()), autocommit=True) as connection:
            connection.execute("CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS")

        def lane(items) -> None:
            for item in items:
                output.buffers[threading.get_ident()] = sections[item] = []
                try:
                    item(server)
                except BaseException as error:  # shown after the transcript, the lane stops
                    failures.append(error)
                    raise

        threads = [threading.Thread(target=lane, args=(items,), name=name) for name, items in lanes.items()]
        sys.stdout = output
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.stdout = output.real
    for item in sorted(sections, key=lambda item: item.__name__):
        print("".join(sections[item]), end="")
    print(f"# done in {time.monotonic() - began:.0f} s")
    if failures:
        raise SystemExit(f"a section failed: {failures[0]!r}")


if __name__ == "__main__":
    main()
