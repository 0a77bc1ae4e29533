"""What adoption checks in the hand-made tables before it touches them (waha_db.lifecycle.adopt).

Each table is compared with its head shape, read from the recorded catalog
(`head_catalog.json`): its columns (types, required columns, columns V2.1 lacks), then
its rows as the head table would hold them (lengths, integer ranges, NULLs, CHECKs,
UNIQUEs), then what ties the tables to each other and to the rest of the database
(sessions on servers of the same user, `auth.users`, views and foreign keys that depend
on them). Reads only: each check adds the problems that block adoption and the actions
it will take to the plan's findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from waha_db.lifecycle import catalog

ADOPTED_TABLES = ("waha_servers", "waha_sessions")  # the seed's tables, in copy order

# Source types a head column accepts, by the head type without its length.
_COMPATIBLE = {
    "uuid": {"uuid"},
    "integer": {"smallint", "integer", "bigint"},
    "boolean": {"boolean"},
    "text": {"text", "character varying", "character"},
    "character varying": {"text", "character varying", "character"},
    "timestamp with time zone": {"timestamp with time zone", "timestamp without time zone"},
}
# The cast used to read a source column as the head type, without a length (lengths are checked, not truncated).
_READ_AS = {"character varying": "text", "integer": "bigint"}
_COLUMN = re.compile(r"^(?P<name>\S+) (?P<type>.+?)(?P<not_null> NOT NULL)?(?: DEFAULT (?P<default>.+))?$")


@dataclass
class Findings:
    """What the checks found: problems block adoption; actions are what it will do."""

    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


@dataclass
class HeadColumn:
    name: str
    type: str  # as format_type renders it, e.g. "character varying(255)"
    not_null: bool
    default: str | None

    @property
    def base_type(self) -> str:
        return self.type.split("(")[0]

    @property
    def length(self) -> int | None:
        found = re.search(r"\((\d+)\)", self.type)
        return int(found.group(1)) if found and self.base_type == "character varying" else None

    def accepts(self, source_type: str) -> bool:
        """Whether a hand-made column of `source_type` can be read as this one."""
        return source_type.split("(")[0] in _COMPATIBLE.get(self.base_type, {self.base_type})


def head_columns(table: str, head: catalog.Snapshot | None = None) -> list[HeadColumn]:
    head = head or catalog.load_head_catalog()
    columns = []
    for text in head["columns"][f"public.{table}"]:
        match = _COLUMN.match(text)
        assert match is not None, f"head_catalog.json has an unreadable column of {table}: {text!r}"
        columns.append(HeadColumn(match["name"], match["type"], bool(match["not_null"]), match["default"]))
    return columns


def _head_constraints(table: str, head: catalog.Snapshot) -> dict[str, str]:
    prefix = f"public.{table}."
    return {
        name[len(prefix) :]: definition for name, definition in head["constraints"].items() if name.startswith(prefix)
    }


def columns_of(connection: sa.Connection, schema: str, table: str) -> dict[str, str]:
    """The columns of `schema`.`table` in order, each with its type as format_type renders it."""
    rows = connection.exec_driver_sql(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = pg_catalog.to_regclass(%(name)s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        {"name": f"{schema}.{table}"},
    ).all()
    return {name: type_ for name, type_ in rows}


def exists(connection: sa.Connection, name: str) -> bool:
    found: bool = connection.exec_driver_sql(
        "SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL", {"name": name}
    ).scalar_one()
    return found


def projection(table: str, source_schema: str, source_columns: dict[str, str], head: catalog.Snapshot) -> str:
    """A SELECT of the hand-made table as the head table would hold it: head columns, defaults for NULLs."""
    expressions = []
    for column in head_columns(table, head):
        read_as = _READ_AS.get(column.base_type, column.base_type)
        if column.name in source_columns and column.accepts(source_columns[column.name]):
            value = f"source.{quote(column.name)}::{read_as}"
            if column.default is not None and column.not_null:
                value = f"COALESCE({value}, {column.default})"
        else:
            value = f"{column.default}" if column.default is not None else f"NULL::{read_as}"
        expressions.append(f"{value} AS {quote(column.name)}")
    return f"SELECT {', '.join(expressions)} FROM {source_schema}.{table} AS source"


def quote(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _column_list(definition: str) -> list[str]:
    listed = re.search(r"\(([^)]*)\)", definition)
    assert listed is not None, f"a UNIQUE or PRIMARY KEY without its columns: {definition!r}"
    return [name.strip() for name in listed.group(1).split(",")]


def check_columns(
    connection: sa.Connection, findings: Findings, table: str, source_schema: str, head: catalog.Snapshot
) -> dict[str, str] | None:
    """The hand-made table's columns (name: type) when its rows can be read as head's; None when a
    column's type does not fit or a required one is missing (its rows are then not read)."""
    source = columns_of(connection, source_schema, table)
    wanted = {column.name: column for column in head_columns(table, head)}
    readable = True
    for name, source_type in source.items():
        if name not in wanted:
            findings.problems.append(
                f"{table}.{name} ({source_type}) is not a V2.1 column: adoption would lose its values; drop it or move them elsewhere first"
            )
    for column in wanted.values():
        if column.name not in source:
            if column.not_null and column.default is None:
                findings.problems.append(
                    f"{table}.{column.name} is missing and V2.1 requires it ({column.type} NOT NULL, no default)"
                )
                readable = False
            else:
                findings.actions.append(
                    f"add column {table}.{column.name} {column.type}"
                    + (f" DEFAULT {column.default}" if column.default else "")
                )
            continue
        source_type = source[column.name]
        if not column.accepts(source_type):
            findings.problems.append(f"{table}.{column.name} is {source_type}, expected {column.type}")
            readable = False
        elif source_type != column.type:
            note = " (values read in the session's time zone)" if source_type == "timestamp without time zone" else ""
            findings.actions.append(f"change {table}.{column.name} from {source_type} to {column.type}{note}")
    return source if readable else None


def check_rows(
    connection: sa.Connection,
    findings: Findings,
    table: str,
    projected: str,
    source_schema: str,
    head: catalog.Snapshot,
) -> None:
    """The rows of one hand-made table, as `projected` reads them, against head's columns and constraints."""
    count = connection.exec_driver_sql(f"SELECT count(*) FROM {source_schema}.{table}").scalar_one()
    findings.actions.append(f"rebuild {table} in the V2.1 shape and copy its {count} row(s)")
    source = columns_of(connection, source_schema, table)
    for column in head_columns(table, head):
        if column.name in source:
            _check_values(connection, findings, table, column, projected, source_schema)
    for name, definition in _head_constraints(table, head).items():
        if definition.startswith("CHECK"):
            expression = definition[len("CHECK ") :]
            rows = (
                connection.exec_driver_sql(
                    f"SELECT p.id::text FROM ({projected}) AS p WHERE NOT {expression} ORDER BY 1"
                )
                .scalars()
                .all()
            )
            if rows:
                findings.problems.append(
                    f"{len(rows)} row(s) of {table} violate {name} {definition}: id {', '.join(rows[:5])}"
                    + (" ..." if len(rows) > 5 else "")
                )
        elif definition.startswith(("UNIQUE", "PRIMARY KEY")):
            columns = _column_list(definition)
            listed = ", ".join(f"p.{quote(c)}" for c in columns)
            duplicates = connection.exec_driver_sql(
                f"SELECT count(*), ({listed})::text FROM ({projected}) AS p GROUP BY {listed} HAVING count(*) > 1 ORDER BY 2"
            ).all()
            for repeated, values in duplicates:
                findings.problems.append(f"{repeated} rows of {table} share ({', '.join(columns)}) = {values}")


def _check_values(
    connection: sa.Connection, findings: Findings, table: str, column: HeadColumn, projected: str, source_schema: str
) -> None:
    """One column's values: their length, their integer range, and NULLs where V2.1 requires a value."""
    if column.length is not None:
        too_long = connection.exec_driver_sql(
            f"SELECT count(*) FROM ({projected}) AS p WHERE length(p.{quote(column.name)}) > {column.length}"
        ).scalar_one()
        if too_long:
            findings.problems.append(
                f"{too_long} row(s) of {table} have a {column.name} longer than {column.length} characters"
            )
    if column.base_type == "integer":
        out_of_range = connection.exec_driver_sql(
            f"SELECT count(*) FROM ({projected}) AS p WHERE p.{quote(column.name)} NOT BETWEEN -2147483648 AND 2147483647"
        ).scalar_one()
        if out_of_range:
            findings.problems.append(f"{out_of_range} row(s) of {table} have a {column.name} outside the integer range")
    nulls = connection.exec_driver_sql(
        f"SELECT count(*) FROM {source_schema}.{table} AS source WHERE source.{quote(column.name)} IS NULL"
    ).scalar_one()
    if nulls and column.not_null:
        if column.default is None:
            findings.problems.append(f"{nulls} row(s) of {table} have no {column.name} (NULL), which V2.1 requires")
        else:
            findings.actions.append(
                f"{nulls} row(s) of {table}: NULL {column.name} becomes the default {column.default}"
            )


def check_references(
    connection: sa.Connection, findings: Findings, present: list[str], projections: dict[str, str]
) -> None:
    """Sessions on a server of the same user, and (on Supabase) users that exist in auth.users."""
    if "waha_sessions" in present:
        servers = projections.get("waha_servers", "SELECT NULL::uuid AS id, NULL::uuid AS user_id WHERE false")
        orphans = connection.exec_driver_sql(
            f"SELECT s.id::text, s.user_id::text, s.waha_server_id::text, o.user_id::text "
            f"FROM ({projections['waha_sessions']}) AS s LEFT JOIN ({servers}) AS o ON o.id = s.waha_server_id "
            f"WHERE o.id IS NULL OR o.user_id IS DISTINCT FROM s.user_id ORDER BY 1"
        ).all()
        for session, user, server, server_user in orphans:
            if server_user is None:
                findings.problems.append(
                    f"waha_sessions id={session} is on server {server}, which is not in waha_servers"
                )
            else:
                findings.problems.append(
                    f"waha_sessions id={session} of user {user} is on server {server} of another user ({server_user})"
                )
    if exists(connection, "auth.users"):
        for table in present:
            strangers = connection.exec_driver_sql(
                f"SELECT count(*) FROM ({projections[table]}) AS p WHERE NOT EXISTS (SELECT FROM auth.users u WHERE u.id = p.user_id)"
            ).scalar_one()
            if strangers:
                findings.problems.append(f"{strangers} row(s) of {table} have a user_id that is not in auth.users")


_DEPENDENTS = """
    SELECT DISTINCT description FROM (
        SELECT 'view ' || v.oid::regclass::text AS description
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
        JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
        WHERE d.refobjid = pg_catalog.to_regclass(%(table)s) AND v.oid <> d.refobjid
        UNION ALL
        SELECT 'foreign key ' || k.conname || ' of ' || k.conrelid::regclass::text
        FROM pg_catalog.pg_constraint k
        WHERE k.confrelid = pg_catalog.to_regclass(%(table)s) AND k.conrelid <> k.confrelid
          AND k.conrelid::regclass::text NOT IN ('waha_servers', 'waha_sessions', 'public.waha_servers', 'public.waha_sessions')
    ) AS found ORDER BY 1
"""


def check_dependents(connection: sa.Connection, findings: Findings, present: list[str], source_schema: str) -> None:
    """Views and foreign keys of other tables that depend on a hand-made table: the rebuild would drop them."""
    for table in present:
        dependents = connection.exec_driver_sql(_DEPENDENTS, {"table": f"{source_schema}.{table}"}).scalars().all()
        for dependent in dependents:
            findings.problems.append(
                f"{dependent} depends on {table}: adoption rebuilds the table; drop it first and recreate it after adoption"
            )
