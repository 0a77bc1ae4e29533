"""What a DBA reads when things go wrong around waha-db: a replay on throwaway PostgreSQL servers.

Runs the real `waha-db` console script of the Python running this file (so the same
script replays any release: run it with another checkout's venv to see that release's
words) against databases of throwaway servers on 127.0.0.1, and prints each command,
its output and its exit status:

1. `repair` after DROP FUNCTION waha_normalized_url(text) CASCADE, and after a revision
   recorded but never applied (a skipped push of 0010);
2. `adopt` of a hand-made database whose app added an audit trigger, an admins' policy,
   and its sessions table to Supabase Realtime's publication;
3. an upgrade that gives up behind a transaction that read waha_config (then pg_sleep(60)),
   while 8 app clients read as authenticator -> authenticated;
4. an upgrade whose backend is ended by pg_terminate_backend, or killed (kill -9); an
   upgrade that waits at its question longer than idle_in_transaction_session_timeout;
   the database changing while the question waits; status under a tiny statement_timeout;
5. two databases of one new server upgraded at once (both create the server's roles);
6. a drift line of an indentation change, and of one difference;
7. status, and its next:, on a read-only database, on a hot standby (pg_basebackup -R
   of the throwaway primary), and where the roles are missing and the owner may not
   create them (then with one of the two created);
11. the small untruths: sql --output and export --workdir into folders that do not
    exist, `python -m waha_db.lifecycle.migrate --help`, servers commands before any
    upgrade, --timeout 99999999999, downgrade base then status, reconcile --live
    --apply with every server unreadable, servers list --json, a malformed URL.

Every server it probes is a closed port on 127.0.0.1, and no database holding the legacy
rows' example host is ever probed: nothing leaves the machine.

With `--check`, it then compares every block docs/UPGRADING.md quotes from it (marked
`<!-- transcript: tools/fault_transcript.py -->`) with what it printed, ports, uuids,
pids, times and durations aside (tools/doc_blocks.py), and exits 1 on a difference.

Usage, from the repository root (all items by default; about 3 minutes):

    .venv/bin/python tools/fault_transcript.py [ITEM ...] [--check]
    /other/checkout/.venv/bin/python tools/fault_transcript.py 3    # item 3 as that release says it
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from tests.support.other_servers import HotStandby  # noqa: E402
from tools.doc_blocks import run_and_check  # noqa: E402
from waha_db.checks.legacy import LEGACY_V1_SQL  # noqa: E402
from waha_db.checks.pgtemp import ThrowawayPostgres  # noqa: E402
from waha_db.database import conninfo  # noqa: E402

DOCUMENT = REPOSITORY / "docs" / "UPGRADING.md"
TOOL = "tools/fault_transcript.py"
USER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
WAHA_DB = str(Path(sys.executable).with_name("waha-db"))
PYTHON = sys.executable

HAND_MADE_V21 = """
CREATE TABLE public.waha_servers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL, nome varchar(255) NOT NULL,
    api_url text NOT NULL, api_key text, descricao text, ativo boolean DEFAULT true, webhook_url text,
    webhook_secret text, timeout integer DEFAULT 30, retry_attempts integer DEFAULT 3, rate_limit integer DEFAULT 100,
    prioridade integer DEFAULT 0, max_sessions integer DEFAULT 50, sessions_ativas integer DEFAULT 0,
    created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now(), UNIQUE (user_id, api_url)
);
CREATE TABLE public.waha_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL,
    waha_server_id uuid NOT NULL REFERENCES public.waha_servers (id) ON DELETE CASCADE,
    session_name varchar(255) NOT NULL, status varchar(50) DEFAULT 'STOPPED', phone_number varchar(20),
    profile_name varchar(255), qr_code text, last_connected_at timestamp,
    created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now(), UNIQUE (waha_server_id, session_name)
);
INSERT INTO public.waha_servers (id, user_id, nome, api_url, prioridade)
VALUES ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', 'Servidor Principal',
        'http://127.0.0.1:9', 10);
INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status)
VALUES ('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'loja-01', 'WORKING');
"""
APP_OBJECTS = """
CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, table_name text, operation text);
CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.audit_log (table_name, operation) VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$;
CREATE TRIGGER servers_audit AFTER INSERT OR UPDATE OR DELETE ON public.waha_servers
    FOR EACH ROW EXECUTE FUNCTION public.audit_row();
ALTER TABLE public.waha_servers ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Admins read all" ON public.waha_servers FOR SELECT TO authenticated
    USING ((current_setting('request.jwt.claims', true)::jsonb ->> 'role') = 'admin');
CREATE PUBLICATION supabase_realtime;
ALTER PUBLICATION supabase_realtime ADD TABLE public.waha_sessions;
ALTER TABLE public.waha_sessions REPLICA IDENTITY FULL;
"""


# --- running waha-db and SQL ---------------------------------------------------------------------------


def run(environment: dict, *arguments: str, program: tuple[str, ...] = (WAHA_DB,), label: str = "") -> tuple[int, str]:
    """Run waha-db (or `program`), print the command, its output and exit status; return them."""
    shown = "waha-db" if program == (WAHA_DB,) else " ".join(Path(word).name for word in program)
    print(f"$ {shown} {shlex.join(arguments)}" + (f"   # {label}" if label else ""))
    done = subprocess.run(
        [*program, *arguments], env=environment, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    output = (done.stdout + done.stderr).rstrip()
    print(output)
    print(f"[exit {done.returncode}]\n")
    return done.returncode, output


def start(environment: dict, *arguments: str) -> subprocess.Popen:
    sys.stdout.flush()
    return subprocess.Popen(
        [WAHA_DB, *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(process: subprocess.Popen, label: str) -> str:
    output, _ = process.communicate(timeout=180)
    print(f"$ waha-db {shlex.join(process.args[1:])}   # {label}")
    print(output.rstrip())
    print(f"[exit {process.returncode}]\n")
    return output


class Database:
    """One database of a throwaway server: its URL, the environment naming it, SQL on it."""

    def __init__(self, server: ThrowawayPostgres, name: str, sql: str = "", *, url=None) -> None:
        self.name = name if url is not None else server.create_database(name)
        self.url = url if url is not None else server.url(self.name)
        self.environment = dict(os.environ, DATABASE_URL=self.url.render_as_string(hide_password=False))
        if sql:
            self.sql(sql)

    def sql(self, statements: str, parameters=None) -> list[tuple]:
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            cursor = connection.execute(statements, parameters)
            return cursor.fetchall() if cursor.description else []

    def show(self, query: str, parameters=None) -> None:
        print(f"sql> {query}")
        for row in self.sql(query, parameters):
            print("     " + " | ".join("NULL" if value is None else str(value) for value in row))
        print()

    def show_revision(self) -> None:
        """What alembic_version records (its absence said, not an error)."""
        print("sql> SELECT version_num FROM public.alembic_version")
        try:
            rows = self.sql("SELECT version_num FROM public.alembic_version")
            print("     " + (", ".join(row[0] for row in rows) or "(empty)") + "\n")
        except psycopg.errors.UndefinedTable:
            print("     (no alembic_version table)\n")

    def quiet(self, *arguments: str) -> None:
        subprocess.run([WAHA_DB, *arguments], env=self.environment, capture_output=True, check=True)


def wait_for(condition, what: str, seconds: float = 30) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def upgrade_backend(database: Database, waiting: str | None = None) -> int | None:
    """The pid of the `waha-db upgrade` backend of this database waiting for a lock (or a transaction)."""
    rows = database.sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'waha-db upgrade' "
        "AND wait_event_type = 'Lock' AND (%s::text IS NULL OR wait_event = %s)",
        (waiting, waiting),
    )
    return rows[0][0] if rows else None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def new_server():
    """A throwaway server of its own: roles never created there, and a crash there disturbs nothing else."""
    sys.stdout.flush()  # testing.postgresql forks: what is still buffered would be written twice
    with ThrowawayPostgres() as server:
        yield server


def legacy_at_0004(server: ThrowawayPostgres, name: str) -> Database:
    database = Database(server, name, LEGACY_V1_SQL)
    database.quiet("upgrade", "0004", "--yes")
    return database


# --- the items -------------------------------------------------------------------------------------------------


def item_1(server: ThrowawayPostgres) -> None:
    print("## 1. repair after DROP FUNCTION ... CASCADE, and after a push that skipped 0010\n")
    database = Database(server, "item1a")
    database.quiet("upgrade", "--yes")
    print("sql> DROP FUNCTION public.waha_normalized_url(text) CASCADE   -- drops the 0010 unique index with it\n")
    database.sql("DROP FUNCTION public.waha_normalized_url(text) CASCADE")
    run(database.environment, "status")
    run(database.environment, "repair", "--yes")
    run(database.environment, "status", "--check")

    skipped = Database(server, "item1b")
    skipped.quiet("upgrade", "0009", "--yes")
    print("sql> UPDATE alembic_version SET version_num = '0010'   -- recorded, never applied (a skipped push)\n")
    skipped.sql("UPDATE public.alembic_version SET version_num = '0010'")
    run(skipped.environment, "status")
    run(skipped.environment, "upgrade", "--yes", label="next: as printed")
    print("sql> UPDATE public.alembic_version SET version_num = '0009'   -- the fix the refusal gives\n")
    skipped.sql("UPDATE public.alembic_version SET version_num = '0009'")
    run(skipped.environment, "upgrade", "--yes")
    run(skipped.environment, "status", "--check")


def item_2(server: ThrowawayPostgres) -> None:
    print("## 2. adopt a hand-made database the app built on: audit trigger, admins' policy, Realtime\n")
    database = Database(server, "item2", HAND_MADE_V21 + APP_OBJECTS)
    print("# the app's additions:\n" + APP_OBJECTS)
    run(database.environment, "adopt", "--yes")
    database.show("SELECT pubname, tablename FROM pg_publication_tables")
    database.show(
        "SELECT tgrelid::regclass, tgname FROM pg_trigger WHERE NOT tgisinternal "
        "AND tgrelid IN ('public.waha_servers'::regclass, 'public.waha_sessions'::regclass) ORDER BY 1, 2"
    )
    database.show("SELECT polname FROM pg_policy WHERE polrelid = 'public.waha_servers'::regclass ORDER BY 1")
    database.show("SELECT relreplident FROM pg_class WHERE oid = 'public.waha_sessions'::regclass")
    print("sql> UPDATE public.waha_servers SET descricao = 'audited'")
    database.sql("UPDATE public.waha_servers SET descricao = 'audited'")
    database.show("SELECT table_name, operation FROM public.audit_log")
    database.show("SELECT nome, api_url FROM public.waha_servers")


class Application:
    """8 signed-in users of the app, as PostgREST connects them: authenticator, SET ROLE authenticated."""

    def __init__(self, database: Database, clients: int = 8) -> None:
        database.sql(
            "DO $$ BEGIN CREATE ROLE authenticator LOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN END $$"
        )
        database.sql("GRANT authenticated TO authenticator")
        self.url = database.url.set(username="authenticator")
        self.stop = threading.Event()
        self.pids: list[int] = []
        self.waits: list[float] = []
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def client(self) -> None:
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            self.pids.append(connection.info.backend_pid)
            connection.execute("SET ROLE authenticated")
            connection.execute("SELECT set_config('request.jwt.claims', %s, false)", (f'{{"sub": "{USER}"}}',))
            while not self.stop.is_set():
                began = time.monotonic()
                connection.execute("SELECT count(*) FROM public.waha_servers").fetchone()
                self.waits.append(time.monotonic() - began)

    def __enter__(self) -> Application:
        for thread in self.threads:
            thread.start()
        wait_for(lambda: len(self.pids) == len(self.threads), "the app's clients")
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def item_3(server: ThrowawayPostgres) -> None:
    print("## 3. An upgrade gives up behind a transaction that read waha_config; the app reads meanwhile\n")
    database = legacy_at_0004(server, "item3")
    with Application(database) as application:
        print(
            f"# pids {', '.join(map(str, sorted(application.pids)))}: 8 app clients, authenticator -> authenticated, "
            "reading waha_servers in a loop"
        )
        blocker = psycopg.connect(conninfo(database.url))
        blocker.execute("SELECT * FROM public.waha_config").fetchall()
        sleeping = threading.Thread(target=lambda: _sleep(blocker), daemon=True)
        sleeping.start()
        wait_for(
            lambda: (
                database.sql("SELECT state FROM pg_stat_activity WHERE pid = %s", (blocker.info.backend_pid,))
                == [("active",)]
            ),
            "the blocker sleeping",
        )
        print(
            f"# pid {blocker.info.backend_pid}: BEGIN; SELECT * FROM waha_config; SELECT pg_sleep(60);   (the blocker)\n"
        )
        upgrade = start(database.environment, "upgrade", "--yes", "--owner", USER, "--lock-timeout", "6")
        finish(upgrade, "--lock-timeout 6")
    database.sql("SELECT pg_cancel_backend(%s)", (blocker.info.backend_pid,))
    sleeping.join(30)
    blocker.close()
    print(
        f"measured: the app's longest read of waha_servers took {max(application.waits) * 1000:.0f} ms "
        f"({len(application.waits)} reads)\n"
    )


def _sleep(connection) -> None:
    try:
        connection.execute("SELECT pg_sleep(60)")
    except psycopg.Error:
        connection.rollback()


def at_the_question(database: Database, arguments: list[str], *, reading: float, meanwhile=None) -> None:
    """Run waha-db at a terminal (a pty), answer y after `reading` seconds, doing `meanwhile` first."""
    print(f"$ waha-db {shlex.join(arguments)}   # at a terminal; the answer y comes after {reading:g} s")
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [WAHA_DB, *arguments],
        env=database.environment,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    output = b""
    asked = False
    while True:
        ready, _, _ = select.select([primary], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not asked and b"[y/N]" in output:
            asked = True
            open_now = database.sql(
                "SELECT a.pid, a.state FROM pg_stat_activity a WHERE a.datname = current_database() "
                "AND a.application_name = 'waha-db upgrade' AND a.xact_start IS NOT NULL"
            )
            time.sleep(reading)
            if meanwhile:
                meanwhile()
            os.write(primary, b"y\n")
        if process.poll() is not None and not ready:
            break
    process.wait()
    os.close(primary)
    print(output.decode(errors="replace").replace("\r\n", "\n").rstrip())
    print(f"[exit {process.returncode}]")
    print(f"measured: while the question waited, waha-db's backends in a transaction: {open_now or 'none'}\n")


def item_4(server: ThrowawayPostgres) -> None:
    print("## 4. Failures after connecting\n")
    print("# a) the upgrade's backend ended with pg_terminate_backend while it waits for waha_config\n")
    database = legacy_at_0004(server, "item4a")
    with psycopg.connect(conninfo(database.url)) as application:
        application.execute("SELECT * FROM public.waha_config").fetchall()
        upgrade = start(database.environment, "upgrade", "--yes", "--owner", USER, "--lock-timeout", "60")
        wait_for(lambda: upgrade_backend(database), "the upgrade waiting")
        pid = upgrade_backend(database)
        print(f"sql> SELECT pg_terminate_backend({pid})\n")
        database.sql("SELECT pg_terminate_backend(%s)", (pid,))
        finish(upgrade, "terminated")
        application.rollback()
    database.show_revision()

    print("# b) the upgrade's backend killed (kill -9), on a server of its own (a crash restarts every backend)\n")
    with new_server() as own:
        killed = legacy_at_0004(own, "item4b")
        application = psycopg.connect(conninfo(killed.url))
        application.execute("SELECT * FROM public.waha_config").fetchall()
        upgrade = start(killed.environment, "upgrade", "--yes", "--owner", USER, "--lock-timeout", "60")
        wait_for(lambda: upgrade_backend(killed), "the upgrade waiting")
        pid = upgrade_backend(killed)
        print(f"# kill -9 {pid}\n")
        os.kill(pid, signal.SIGKILL)
        finish(upgrade, "its backend killed")
        application.close()
        wait_for(lambda: _accepts(killed), "the server back after the crash")
        killed.show_revision()

    print("# c) idle_in_transaction_session_timeout = 1s, and a person who reads the plan for 2 s\n")
    slow = Database(server, "item4c", LEGACY_V1_SQL)
    slow.sql("ALTER DATABASE item4c SET idle_in_transaction_session_timeout = '1s'")
    at_the_question(slow, ["upgrade", "--owner", USER], reading=2)
    slow.show_revision()

    print("# d) while the person reads the plan, another run upgrades the database to 0004\n")
    moving = Database(server, "item4d")
    other: list[subprocess.Popen] = []

    def another_run() -> None:  # it runs to its end while the question waits
        other.append(start(moving.environment, "upgrade", "0004", "--yes"))
        other[0].wait(timeout=120)

    at_the_question(moving, ["upgrade"], reading=0.5, meanwhile=another_run)
    finish(other[0], "the other run, started while the question waited")
    moving.show_revision()

    print("# e) status on a database whose statement_timeout is 1 ms\n")
    timed = Database(server, "item4e")
    timed.quiet("upgrade", "--yes")
    timed.sql("ALTER DATABASE item4e SET statement_timeout = 1")
    run(timed.environment, "status")


def _accepts(database: Database) -> bool:
    try:
        return bool(database.sql("SELECT 1"))
    except psycopg.OperationalError:
        return False


def item_5(server: ThrowawayPostgres) -> None:
    print("## 5. Two databases of one new server upgraded at once (the roles belong to the server)\n")
    with new_server() as own:
        print("# exactly: another upgrade has created the roles and not committed yet when this one creates them\n")
        first, second = Database(own, "first"), Database(own, "second")
        with psycopg.connect(conninfo(first.url)) as other_upgrade:
            print("sql (first)> BEGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS;")
            other_upgrade.execute("CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS")
            upgrade = start(second.environment, "upgrade", "--yes")
            wait_for(lambda: upgrade_backend(second, "transactionid"), "the second upgrade's CREATE ROLE waiting")
            print("sql (first)> COMMIT;   -- once the upgrade of 'second' waits for it\n")
            other_upgrade.commit()
        finish(upgrade, "upgrade of 'second'")
    print("# as it happens: 5 rounds of two upgrades started together, each round on a server without the roles\n")
    failures = []
    with new_server() as own:
        for round_number in range(1, 6):
            databases = [Database(own, f"r{round_number}_{side}") for side in ("a", "b")]
            upgrades = [start(database.environment, "upgrade", "--yes") for database in databases]
            outputs = [upgrade.communicate(timeout=180)[0] for upgrade in upgrades]
            failed = [
                output.strip().splitlines()[-1]
                for upgrade, output in zip(upgrades, outputs, strict=True)
                if upgrade.returncode
            ]
            failures += failed
            print(
                f"round {round_number}: exit {[upgrade.returncode for upgrade in upgrades]}"
                + (f": {failed[0]}" if failed else "")
            )
            for database in databases:
                own.drop_database(database.name)
            Database(own, "postgres", url=own.url()).sql("DROP ROLE authenticated; DROP ROLE service_role")
    print(f"measured: {len(failures)} failed upgrade(s) in 5 rounds\n")


def item_6(server: ThrowawayPostgres) -> None:
    print("## 6. Drift lines: an indentation change, and one difference\n")
    database = Database(server, "item6")
    database.quiet("upgrade", "--yes")
    (definition,) = database.sql("SELECT pg_get_functiondef('public.release_waha_session(uuid)'::regprocedure)")[0]
    print(
        "sql> CREATE OR REPLACE FUNCTION public.release_waha_session ...   -- the same, its DECLARE indented by a tab\n"
    )
    database.sql(definition.replace("\n        DECLARE\n", "\n\tDECLARE\n", 1))
    run(database.environment, "status")


def item_7(server: ThrowawayPostgres) -> None:
    print("## 7. status, and its next:, where the upgrade cannot write or cannot create the roles\n")
    print("# a) ALTER DATABASE item7a SET default_transaction_read_only = on\n")
    read_only = Database(server, "item7a")
    read_only.sql("ALTER DATABASE item7a SET default_transaction_read_only = on")
    run(read_only.environment, "status")
    run(read_only.environment, "upgrade", "--yes", label="next: as printed")

    print("# b) a hot standby: pg_basebackup -R of a throwaway primary, started on its own port\n")
    with new_server() as primary:
        name = primary.create_database("app")
        standby = HotStandby(primary).start()
        try:
            standby.caught_up()
            replica = Database(primary, name, url=standby.url(name))
            replica.show("SELECT pg_is_in_recovery()")
            run(replica.environment, "status")
            run(replica.environment, "upgrade", "--yes", label="next: as printed")
        finally:
            standby.stop()

    print("# c) the roles are missing, and the database's owner may not create them\n")
    with new_server() as own:
        superuser = Database(own, "postgres", url=own.url())
        superuser.sql("CREATE ROLE app_owner LOGIN")
        superuser.sql("CREATE DATABASE app OWNER app_owner")
        print("sql (superuser)> CREATE ROLE app_owner LOGIN; CREATE DATABASE app OWNER app_owner;\n")
        owner = Database(own, "app", url=own.url("app").set(username="app_owner"))
        run(owner.environment, "status")
        run(owner.environment, "upgrade", "--yes", label="next: as printed")
        print("sql (superuser)> CREATE ROLE authenticated NOLOGIN;\n")
        superuser.sql("CREATE ROLE authenticated NOLOGIN")
        run(owner.environment, "status")
        run(owner.environment, "upgrade", "--yes", label="next: as printed")


def item_11(server: ThrowawayPostgres) -> None:
    print("## 11. Small untruths\n")
    scratch = Path(tempfile.mkdtemp(prefix="waha-untruths-"))
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    run(environment, "sql", "--output", str(scratch / "no" / "such" / "x.sql"))
    run(environment, "export", "supabase", "--workdir", str(scratch / "nowhere"))
    print(f"$ find {scratch}")
    print("\n".join(str(path) for path in sorted(scratch.rglob("*"))) or "(nothing)")
    print()
    shutil.rmtree(scratch)

    schema = Path(
        subprocess.run(
            [PYTHON, "-c", "from waha_db.lifecycle import migrate; print(migrate.FULL_SCHEMA_PATH)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    before = schema.stat().st_mtime_ns
    run(environment, "-m", "waha_db.lifecycle.migrate", "--help", program=(PYTHON,))
    print(f"measured: {schema.name} {'rewritten' if schema.stat().st_mtime_ns != before else 'untouched'} by --help\n")

    empty = Database(server, "item11a")
    run(empty.environment, "servers", "list", "--user", USER)
    run(empty.environment, "sessions", "reconcile")

    # Only servers on closed ports of 127.0.0.1 here: reconcile --live probes every server of the database.
    fleet = Database(server, "item11b")
    fleet.quiet("upgrade", "--yes")
    run(
        fleet.environment,
        "servers",
        "add",
        "--user",
        USER,
        "--name",
        "Grande",
        "--url",
        "http://127.0.0.1:9",
        "--timeout",
        "99999999999",
    )
    for name in ("Morto", "Outro"):
        fleet.sql(
            "INSERT INTO public.waha_servers (user_id, nome, api_url, timeout, retry_attempts) "
            "VALUES (%s, %s, %s, 1, 0)",
            (USER, name, f"http://127.0.0.1:{closed_port()}"),
        )
    fleet.sql(
        "SELECT public.report_waha_server_version(id, '2024.10.8', 'WEBJS', 'PLUS') FROM public.waha_servers "
        "WHERE nome = 'Morto'"
    )
    run(fleet.environment, "sessions", "reconcile", "--live", "--apply", "--yes")
    run(fleet.environment, "servers", "list", "--user", USER, "--json")

    legacy = Database(server, "item11c", LEGACY_V1_SQL)
    legacy.quiet("upgrade", "--owner", USER, "--yes")
    run(legacy.environment, "downgrade", "base", "--yes")
    run(legacy.environment, "status")
    run(legacy.environment, "downgrade", "base", "--yes", label="again")
    run(environment, "--database-url", "postgresql://app@127.0.0.1:notaport/app", "status")


ITEMS = {"1": item_1, "2": item_2, "3": item_3, "4": item_4, "5": item_5, "6": item_6, "7": item_7, "11": item_11}


def transcript(chosen: list[str]) -> None:
    began = time.monotonic()
    with ThrowawayPostgres() as server:
        # Roles belong to the server: made once here, as Supabase has them (items 5 and 7 use servers without).
        Database(server, "postgres", url=server.url()).sql(
            "CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS"
        )
        print(
            f"# waha-db of {Path(sys.executable).parents[1]}, PostgreSQL {server.version} on 127.0.0.1:{server.port}\n"
        )
        for key in chosen or ITEMS:
            try:
                ITEMS[key](server)
            except Exception as error:  # a release that fails on the way: said, and the next item runs
                print(f"# item {key} stopped: {type(error).__name__}: {error}\n")
    print(f"# done in {time.monotonic() - began:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="*", metavar="ITEM", help=f"{' '.join(ITEMS)} (default: all)")
    parser.add_argument("--check", action="store_true", help=f"compare the blocks {DOCUMENT.name} quotes with the run")
    arguments = parser.parse_args()
    unknown = [item for item in arguments.items if item not in ITEMS]
    if unknown:
        parser.error(f"no item {', '.join(unknown)}: the items are {', '.join(ITEMS)}")
    os.environ.pop("DATABASE_URL", None)
    if not arguments.check:
        transcript(arguments.items)
        return 0
    return run_and_check(DOCUMENT, TOOL, lambda: transcript(arguments.items), REPOSITORY)


if __name__ == "__main__":
    sys.exit(main())
