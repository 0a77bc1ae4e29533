"""waha_db.database: conninfo, the one libpq connection string the toolkit (bench), the tests and psql use;
and the oldest server version waha-db supports."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.support.databases import run_sql
from waha_db import database
from waha_db.database import conninfo, display_url, mask_password, parse_url


def test_every_part_survives_libpq_parsing_even_spaces_and_url_delimiters():
    parsed = conninfo_to_dict(
        conninfo("postgres://app%40ops:p%40ss%3A%2F%25%20word@127.0.0.1:6543/my%20app?sslmode=disable")
    )
    assert parsed == {
        "user": "app@ops",
        "password": "p@ss:/% word",
        "host": "127.0.0.1",
        "port": "6543",
        "dbname": "my app",
        "sslmode": "disable",
    }


def test_an_ipv6_host_is_bracketed():
    assert conninfo_to_dict(conninfo("postgresql://app@[::1]:5432/appdb"))["host"] == "::1"


def test_psycopg_connects_to_a_database_whose_name_has_a_space(cluster):
    run_sql(cluster.url("postgres"), 'CREATE DATABASE "waha cli conninfo"')
    try:
        with psycopg.connect(conninfo(cluster.url("waha cli conninfo"))) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("waha cli conninfo",)
    finally:
        run_sql(cluster.url("postgres"), 'DROP DATABASE "waha cli conninfo"')


# --- the server's version ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "number"),
    [
        ("18.6", 180006),
        ("15.18 (Debian 15.18-0+deb12u1)", 150018),
        ("17beta1", 170000),
        ("14.11", 140011),
        ("9.6.24", 90624),
    ],
)
def test_version_number_reads_a_version_as_the_server_counts_it(version, number):
    assert database.version_number(version) == number


@pytest.mark.parametrize(
    ("number", "version"), [(150000, "15.0"), (160002, "16.2"), (170004, "17.4"), (180006, "18.6")]
)
def test_15_and_later_are_supported(number, version):
    assert database.unsupported_server_reason(number, version) is None


@pytest.mark.parametrize(("number", "version"), [(140011, "14.11"), (130016, "13.16")])
def test_13_and_14_are_refused_as_untested(number, version):
    assert database.unsupported_server_reason(number, version) == (
        f"PostgreSQL {version} is older than waha-db supports: it needs PostgreSQL 15 or later (tested on 15, 16 and 18)"
    )


@pytest.mark.parametrize(("number", "version"), [(120020, "12.20"), (90624, "9.6.24")])
def test_older_than_13_is_refused_and_says_what_is_missing(number, version):
    reason = database.unsupported_server_reason(number, version)
    assert reason.startswith(f"PostgreSQL {version} is older than waha-db supports: it needs PostgreSQL 15 or later")
    assert reason.endswith("before 13, gen_random_uuid(), the default of every id, is not even built in")


def test_the_refusal_says_what_to_do():
    with pytest.raises(database.UnsupportedServer) as refused:
        database.require_supported_version(140011, "14.11")
    assert str(refused.value).endswith(
        "Nothing was done. Upgrade the server to PostgreSQL 15 or later first "
        "(pg_upgrade, or your provider's major-version upgrade), then run waha-db again."
    )


def test_a_password_with_an_unencoded_at_is_masked_whole():
    text = "cannot use postgresql://postgres:Hun@ter2@127.0.0.1/app today"
    assert mask_password(text) == "cannot use postgresql://postgres:***@127.0.0.1/app today"
    assert display_url("postgresql://postgres:Hun@ter2@127.0.0.1/app") == "postgresql://postgres:***@127.0.0.1/app"


def test_a_password_holding_a_question_mark_and_an_unencoded_at_is_refused():
    with pytest.raises(database.DatabaseUrlError, match="percent-encoded as %40"):
        parse_url("postgresql://postgres:Hun?ter@2@127.0.0.1/app")
    assert display_url("postgresql://postgres:Hun?ter@2@127.0.0.1/app") == "postgresql://postgres:***@127.0.0.1/app"


def test_a_password_given_as_a_query_option_is_masked():
    shown = display_url("postgresql://app@127.0.0.1:5432/appdb?sslmode=disable&password=S3cretPW")
    assert "S3cretPW" not in shown
    assert shown == "postgresql://app@127.0.0.1:5432/appdb?password=***&sslmode=disable"


def test_an_at_in_a_query_option_is_not_taken_for_one_in_the_password():
    assert parse_url("postgresql://app:pw@127.0.0.1/appdb?application_name=ops@night").host == "127.0.0.1"
