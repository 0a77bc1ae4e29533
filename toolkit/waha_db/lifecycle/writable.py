"""Whether a database accepts the writes a command that changes the schema makes.

A hot standby (`pg_is_in_recovery()`) accepts none; nor does a database whose
transactions are read-only (`default_transaction_read_only = on`: set by a DBA, or by a
provider whose disk filled up). The plans of upgrade, downgrade, adopt and repair refuse
with these words before asking, and `status` shows them with its `next:`, so the
command it names fails with exactly the refusal shown.
"""

from __future__ import annotations

import sqlalchemy as sa

STANDBY = "this server is a hot standby"


def is_standby(problem: str | None) -> bool:
    """Whether `writable_problem` said the server is a hot standby (the fix is another server, not a setting)."""
    return problem is not None and problem.startswith(STANDBY)


def writable_problem(connection: sa.Connection) -> str | None:
    """Why this connection's transactions may not write (a hot standby, default_transaction_read_only);
    None when they may. Every command that changes the schema refuses with these words before it asks,
    and `status` shows them with its `next:`.
    """
    standby, read_only, source, database, user = connection.exec_driver_sql(
        "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only') = 'on', "
        "(SELECT source FROM pg_catalog.pg_settings WHERE name = 'default_transaction_read_only'), "
        "pg_catalog.current_database(), current_user"
    ).one()
    if standby:
        return (
            f"{STANDBY} (pg_is_in_recovery() is true): it accepts no writes. "
            "Run the command against the primary server; the standby follows it."
        )
    if not read_only:
        return None
    fixes = {
        "database": f"BEGIN READ WRITE; ALTER DATABASE {_identifier(database)} RESET default_transaction_read_only; COMMIT;",
        "user": f"BEGIN READ WRITE; ALTER ROLE {_identifier(user)} RESET default_transaction_read_only; COMMIT;",
        "database user": f"BEGIN READ WRITE; ALTER ROLE {_identifier(user)} IN DATABASE {_identifier(database)} "
        "RESET default_transaction_read_only; COMMIT;",
        "configuration file": "ALTER SYSTEM SET default_transaction_read_only = off; SELECT pg_catalog.pg_reload_conf();",
    }
    where = {
        "database": f"for database {database}",
        "user": f"for role {user}",
        "database user": f"for role {user} in database {database}",
        "configuration file": "in the server's configuration",
        "client": "by this connection's options (PGOPTIONS, or options= in the URL)",
    }.get(source, f"(source: {source})")
    fix = fixes.get(source)
    return (
        f"this database is read-only: default_transaction_read_only is on {where}, so every write is refused. "
        "If it is read-only on purpose (a provider makes a database read-only when its disk "
        "is full), resolve that first; otherwise turn it off"
        + (f":\n{fix}" if fix else ".")
        + "\nOr, for one run: add ?options=-c%20default_transaction_read_only%3Doff to the database URL."
    )


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
