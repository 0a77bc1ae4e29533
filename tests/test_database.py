"""waha_db.database.conninfo: the one libpq connection string the toolkit (bench), the tests and psql use."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from waha_db.database import conninfo


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
    cluster.run_sql("postgres", 'CREATE DATABASE "waha cli conninfo"')
    try:
        with psycopg.connect(conninfo(cluster.url("waha cli conninfo"))) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("waha cli conninfo",)
    finally:
        cluster.run_sql("postgres", 'DROP DATABASE "waha cli conninfo"')
