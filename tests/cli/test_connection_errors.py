"""A connection that fails is one line (host, port, database, the reason), exit 1, and never shows a password."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest

from tests.support.databases import PASSWORD, run_sql
from tests.support.network import free_port

SECRET = "s3cret-Pa55word"


def test_unreachable_server_is_one_line_without_the_password(waha_db):
    port = free_port()
    result = waha_db(f"postgresql://app:{SECRET}@127.0.0.1:{port}/appdb", "status")
    assert result.exit_code == 1
    assert SECRET not in result.output
    assert "Traceback" not in result.output
    line = result.output.strip()
    assert "\n" not in line
    assert line.startswith(f"Error: cannot connect to PostgreSQL at 127.0.0.1:{port}, database appdb:")
    assert "Connection refused" in line


def test_wrong_password_is_the_servers_reason_without_the_password(waha_db, cluster, password_role):
    url = cluster.url("postgres").set(username=password_role, password=SECRET)
    result = waha_db(url, "status")
    assert result.exit_code == 1
    assert SECRET not in result.output
    assert f'database postgres: password authentication failed for user "{password_role}"' in result.output
    assert result.output.count("\n") == 1


def test_right_password_connects(waha_db, cluster, password_role):
    result = waha_db(cluster.url("postgres").set(username=password_role, password=PASSWORD), "status")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "postgresql+psycopg://waha_cli_password_user:***@127.0.0.1" in result.output


def test_unknown_host_is_the_resolvers_reason(waha_db, monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    result = waha_db(f"postgres://app:{SECRET}@db.nowhere.example:5432/appdb", "upgrade", "--yes")
    assert result.exit_code == 1
    assert SECRET not in result.output
    assert result.output.startswith("Error: cannot connect to PostgreSQL at db.nowhere.example:5432, database appdb:")
    assert "Name or service not known" in result.output


@pytest.mark.parametrize("url", ["mysql://app:s3cret-Pa55word@127.0.0.1/appdb", "not a url at all s3cret-Pa55word"])
def test_bad_url_is_refused_without_the_password(waha_db, url):
    result = waha_db(url, "status")
    assert result.exit_code == 2  # a usage error, as --help says
    assert SECRET not in result.output
    assert "postgresql://" in result.output


def test_no_database_given_says_how_to_give_one(waha_db):
    result = waha_db(None, "status")
    assert result.exit_code == 2
    assert "pass --database-url" in result.output and "DATABASE_URL" in result.output


def test_database_url_comes_from_the_environment(waha_db, fresh_database, monkeypatch):
    monkeypatch.setenv(
        "DATABASE_URL", fresh_database("head").set(drivername="postgres").render_as_string(hide_password=False)
    )
    result = waha_db(None, "status")
    assert result.exit_code == 0, result.output
    assert "at head" in result.output


def test_usage_error_exits_2(waha_db):
    assert waha_db(None, "servers", "list", "--user", "not-a-uuid").exit_code == 2
    assert waha_db(None, "no-such-command").exit_code == 2


def test_console_script_reports_a_refused_connection_in_one_line():
    port = free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from waha_db.cli import main; main()",
            "--database-url",
            f"postgresql://app:{SECRET}@127.0.0.1:{port}/appdb",
            "history",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "cannot connect to PostgreSQL" in done.stderr


@pytest.mark.parametrize("where", ["bench --database-url", "--database-url bench"])
def test_bench_on_an_unreachable_server_is_one_line_without_the_password(waha_db, where):
    """bench connects with plain psycopg, whose errors read as the SQLAlchemy ones do."""
    port = free_port()
    url = f"postgresql://app:{SECRET}@127.0.0.1:{port}/appdb"
    result = waha_db(None, "bench", "--database-url", url) if where.startswith("bench") else waha_db(url, "bench")
    assert result.exit_code == 1
    assert SECRET not in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot connect to PostgreSQL at 127.0.0.1:{port}, database appdb: Connection refused "
        "(Is the server running on that host and accepting TCP/IP connections?)"
    ]


def test_bench_refused_by_the_database_says_what_it_refused(waha_db, cluster, fresh_database):
    """A psycopg error that is not a connection failure: the server's message, no traceback.

    An empty database (bench refuses any other) whose schema public the role may not
    create in (PostgreSQL 15 and later grant CREATE there to its owner only).
    """
    url = fresh_database("empty")
    role = f"waha_cli_{uuid.uuid4().hex[:8]}"
    run_sql(cluster.url("postgres"), f"CREATE ROLE {role} LOGIN")
    result = waha_db(None, "bench", "--database-url", url.set(username=role).render_as_string(hide_password=False))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: the database refused: permission denied for schema public"


def test_an_unencoded_at_in_the_password_is_refused_without_showing_it_or_looking_up_its_tail(waha_db, network_jail):
    result = waha_db("postgresql://postgres:Hun@ter2@127.0.0.1/app", "status")
    assert result.exit_code == 2
    assert "Hun" not in result.output and "ter2" not in result.output
    assert "percent-encoded as %40" in result.output
    assert result.output.count("\n") == 1
    assert network_jail.refused_names == []
