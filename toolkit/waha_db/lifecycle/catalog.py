"""Catalog snapshots, and drift of a managed database from the schema at head.

A snapshot is a plain, JSON-able description of what the catalog holds: relations,
columns in order, constraints, indexes, triggers, functions, row-security policies,
grants, comments; each rendered by PostgreSQL itself (`pg_get_constraintdef`,
`pg_get_indexdef`, `pg_get_functiondef`...), so two databases with the same schema
give equal snapshots whatever SQL built them. `verify` compares snapshots (online vs
offline SQL vs `sql/schema.sql`, before and after a downgrade to base).

Drift: the WAHA part of a snapshot is compared with `toolkit/waha_db/lifecycle/head_catalog.json`, the
same snapshot taken of a database migrated to head (regenerate it with
`python -m waha_db.checks.head_catalog --write`; `waha-db verify` fails when it is stale). Comparing
with a recorded snapshot means `status` needs nothing but read access to the
database it inspects: no scratch database on a production server.

Alembic's own `alembic_version` is compared for who may use it only: its grants, row
security and policies (it is no API table, revision 0011).

Left out of the drift comparison because they legitimately differ between fresh
plain PostgreSQL, Supabase and upgraded legacy databases: foreign keys to Supabase's
`auth.users`, grants held by the tables' owner, and comments.

The same schema gives the same snapshot on every supported server version (15 to
18), so a catalog recorded on one compares with a database on another: what one
version records and another cannot is normalised in the queries below (PostgreSQL
18's NOT NULL constraints in pg_constraint; "every privilege" as ALL, since
PostgreSQL 17's MAINTAIN is part of it there and does not exist on 15).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HEAD_CATALOG = Path(__file__).with_name("head_catalog.json")

# A snapshot, section by section: "schemas" is a sorted list of names; "columns" and "grants" map a
# relation to its lines; every other section maps an object's name to its definition as PostgreSQL
# renders it. Recorded as JSON (head_catalog.json), so its values are read back untyped.
Snapshot = dict[str, Any]

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
LEGACY_TABLES = ("waha_config",)
SECTIONS = (
    "schemas",
    "relations",
    "columns",
    "constraints",
    "indexes",
    "triggers",
    "functions",
    "policies",
    "row_security",
    "grants",
    "comments",
)

_SCHEMA_FILTER = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
"""

_QUERIES = {
    "schemas": f"""
        SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner) = current_user
        FROM pg_catalog.pg_namespace n WHERE {_SCHEMA_FILTER}
    """,
    "relations": f"""
        SELECT n.nspname || '.' || c.relname,
               CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                    WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                    ELSE c.relkind::text END
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_SCHEMA_FILTER}
    """,
    "columns": f"""
        SELECT n.nspname || '.' || c.relname, a.attnum,
               pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || COALESCE(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND {_SCHEMA_FILTER}
    """,
    "constraints": f"""
        SELECT n.nspname || '.' || c.relname || '.' || k.conname, pg_catalog.pg_get_constraintdef(k.oid)
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {_SCHEMA_FILTER}
          -- PostgreSQL 18 records every NOT NULL here too; the column's NOT NULL already
          -- says it (older servers can say nothing more). Kept: NOT VALID ones (the column
          -- may hold NULLs) and NO INHERIT ones, which change behaviour.
          AND NOT (k.contype = 'n' AND k.convalidated AND NOT k.connoinherit)
    """,
    "indexes": f"""
        SELECT n.nspname || '.' || t.relname || '.' || c.relname, pg_catalog.pg_get_indexdef(c.oid)
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {_SCHEMA_FILTER}
    """,
    "triggers": f"""
        SELECT n.nspname || '.' || c.relname || '.' || t.tgname, pg_catalog.pg_get_triggerdef(t.oid)
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND {_SCHEMA_FILTER}
    """,
    "functions": f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
               pg_catalog.pg_get_functiondef(p.oid)
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p') AND {_SCHEMA_FILTER}
    """,
    "policies": """
        SELECT p.schemaname || '.' || p.tablename || '.' || p.policyname,
               p.permissive || ' FOR ' || p.cmd || ' TO ' || pg_catalog.array_to_string(p.roles, ', ')
               || COALESCE(' USING (' || p.qual || ')', '') || COALESCE(' WITH CHECK (' || p.with_check || ')', '')
        FROM pg_catalog.pg_policies p
    """,
    "row_security": f"""
        SELECT n.nspname || '.' || c.relname,
               CASE WHEN c.relforcerowsecurity THEN 'forced' WHEN c.relrowsecurity THEN 'on' ELSE 'off' END
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND {_SCHEMA_FILTER}
    """,
    # A grantee holding every privilege this server has for a relation is written ALL:
    # what GRANT ALL gives grew with the server (PostgreSQL 17 added MAINTAIN), and
    # pg_dump, hence pg_upgrade, carries ALL over as ALL. Anything less is listed, so a
    # missing or an extra privilege (MAINTAIN included) is still seen on every version.
    # Functions have only EXECUTE, on every version: listed as it is.
    "grants": f"""
        SELECT object, grantee,
               CASE WHEN everything IS NOT NULL AND everything <@ held THEN 'ALL'
                    ELSE pg_catalog.array_to_string(held, ', ') END
        FROM (
            SELECT object, grantee, pg_catalog.array_agg(privilege ORDER BY privilege) AS held, everything
            FROM (
                SELECT n.nspname || '.' || c.relname AS object,
                       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
                       acl.privilege_type AS privilege,
                       ARRAY(
                           SELECT owner.privilege_type
                           FROM pg_catalog.aclexplode(pg_catalog.acldefault(
                               CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner
                           )) AS owner
                           WHERE owner.grantee = c.relowner
                       ) AS everything
                FROM pg_catalog.pg_class c
                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
                WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND acl.grantee <> c.relowner AND {_SCHEMA_FILTER}
                UNION ALL
                SELECT n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
                       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END,
                       acl.privilege_type,
                       NULL
                FROM pg_catalog.pg_proc p
                JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS acl
                WHERE acl.grantee <> p.proowner AND {_SCHEMA_FILTER}
            ) AS granted
            GROUP BY object, grantee, everything
        ) AS held_by_grantee
    """,
    "comments": f"""
        SELECT n.nspname || '.' || c.relname || COALESCE('.' || a.attname, ''), d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.objoid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
        WHERE {_SCHEMA_FILTER}
        UNION ALL
        SELECT n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', d.description
        FROM pg_catalog.pg_description d
        JOIN pg_catalog.pg_proc p ON d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.objoid
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE {_SCHEMA_FILTER}
    """,
}


def catalog_snapshot(connection: sa.Connection) -> Snapshot:
    """Everything outside PostgreSQL's own schemas, as PostgreSQL renders it (see module doc)."""
    snapshot: Snapshot = {}
    for section, query in _QUERIES.items():
        rows = connection.exec_driver_sql(query.replace("%", "%%")).all()
        if section == "columns":
            tables: dict[str, list[str]] = {}
            for table, _number, column in sorted(rows):
                tables.setdefault(table, []).append(column)
            snapshot[section] = tables
        elif section == "schemas":
            snapshot[section] = sorted(name for name, _ in rows)
        elif section == "grants":
            grants: dict[str, list[str]] = {}
            for obj, grantee, privileges in sorted(rows):
                grants.setdefault(obj, []).append(f"{grantee}: {privileges}")
            snapshot[section] = grants
        else:
            snapshot[section] = {name: value for name, value in sorted(rows)}
    return snapshot


def _is_waha(name: str) -> bool:
    """Whether a snapshot key names a WAHA object: a `waha_*` table of public (the legacy
    waha_config aside) or something on one, or a function of public with `waha` in its name."""
    if not name.startswith("public."):
        return False
    rest = name[len("public.") :]
    if "(" in rest.split(".")[0]:
        return "waha" in rest.split("(")[0]
    table = rest.split(".")[0]
    return table.startswith("waha_") and table not in LEGACY_TABLES


# Alembic's bookkeeping table is not waha-db's to shape, but who may use it is: revision 0011 takes it
# out of the API (no grant to the app's roles, row security on, no policy).
VERSION_TABLE = "public.alembic_version"
VERSION_TABLE_SECTIONS = ("policies", "row_security", "grants")


def _is_version_table_access(section: str, name: str) -> bool:
    return section in VERSION_TABLE_SECTIONS and (name == VERSION_TABLE or name.startswith(VERSION_TABLE + "."))


def waha_objects(snapshot: Snapshot) -> Snapshot:
    """The WAHA part of a snapshot, minus what legitimately varies between databases (module doc), plus
    who may use alembic_version (its grants, row security and policies)."""
    waha: Snapshot = {}
    for section in SECTIONS:
        if section in ("schemas", "comments"):
            continue
        items = snapshot.get(section, {})
        kept = {
            name: value for name, value in items.items() if _is_waha(name) or _is_version_table_access(section, name)
        }
        if section == "constraints":
            kept = {name: value for name, value in kept.items() if "REFERENCES auth." not in value}
        waha[section] = kept
    return waha


def describe_object(section: str, name: str) -> str:
    """`trigger public.waha_servers.servers_audit`, `grants on public.waha_servers`: an object as drift names it."""
    return _describe(section, name)


def short(value: object, limit: int = 160) -> str:
    """A definition in one quoted line, whitespace collapsed, as drift lines show it."""
    return _short(value, limit)


def _describe(section: str, name: str) -> str:
    singular = {
        "relations": "relation",
        "columns": "table",
        "constraints": "constraint",
        "indexes": "index",
        "triggers": "trigger",
        "functions": "function",
        "policies": "policy",
        "row_security": "row security of",
        "grants": "grants on",
        "comments": "comment on",
    }.get(section, section)
    return f"{singular} {name}"


def diff_snapshots(
    expected: Snapshot, actual: Snapshot, *, expected_label: str = "expected", actual_label: str = "found"
) -> list[str]:
    """What differs between two snapshots, one readable line per difference; empty when equal."""
    differences: list[str] = []
    for section in SECTIONS:
        if section not in expected and section not in actual:
            continue
        want, have = expected.get(section, {}), actual.get(section, {})
        if section == "schemas":
            for name in sorted(set(want) - set(have)):
                differences.append(f"missing schema {name}")
            for name in sorted(set(have) - set(want)):
                differences.append(f"unexpected schema {name}")
            continue
        for name in sorted(set(want) | set(have)):
            if name not in have:
                differences.append(f"missing {_describe(section, name)}")
            elif name not in want:
                differences.append(f"unexpected {_describe(section, name)}: {_short(have[name])}")
            elif section == "columns" and want[name] != have[name]:
                differences += _column_differences(name, want[name], have[name], expected_label, actual_label)
            elif want[name] != have[name]:
                where, wanted, found = _first_difference(want[name], have[name])
                shown_wanted, shown_found, whitespace = _shown(wanted, found)
                where = f"{where}{' differs only in whitespace (' + WHITESPACE_KEY + ')' if whitespace else ''}"
                differences.append(
                    f"changed {_describe(section, name)}: {where + ': ' if where else ''}"
                    f"{expected_label} {shown_wanted}, {actual_label} {shown_found}"
                )
    return differences


def _column_differences(
    table: str, want: list[str], have: list[str], expected_label: str, actual_label: str
) -> list[str]:
    def by_name(columns: list[str]) -> dict[str, str]:
        return {column.split(" ", 1)[0]: column for column in columns}

    wanted, found = by_name(want), by_name(have)
    lines = [f"missing column {table}.{name} ({wanted[name]})" for name in wanted if name not in found]
    lines += [f"unexpected column {table}.{name} ({found[name]})" for name in found if name not in wanted]
    lines += [
        f"changed column {table}.{name}: {expected_label} {wanted[name]!r}, {actual_label} {found[name]!r}"
        for name in wanted
        if name in found and wanted[name] != found[name]
    ]
    if not lines and list(wanted) != list(found):
        lines.append(
            f"column order of {table}: {expected_label} {', '.join(wanted)}; {actual_label} {', '.join(found)}"
        )
    return lines


def _first_difference(wanted: object, found: object) -> tuple[str, object, object]:
    """Where two values differ, and how: for multi-line texts (function bodies) the first line that
    differs, as it is (`line 6`, and the two lines, whitespace kept); else no place and the values."""
    if not (isinstance(wanted, str) and isinstance(found, str) and "\n" in wanted + found):
        return "", wanted, found
    wanted_lines, found_lines = wanted.splitlines(), found.splitlines()
    for number, (left, right) in enumerate(
        zip(wanted_lines + [""] * len(found_lines), found_lines + [""] * len(wanted_lines), strict=True), 1
    ):
        if left != right:
            return f"line {number}", left, right
    return "", wanted, found


# How a difference of whitespace alone is drawn: both sides would read the same once collapsed.
_DRAWN_WHITESPACE = str.maketrans({" ": "\u00b7", "\t": "\u2192", "\r": "\u240d", "\n": "\u21b5"})
WHITESPACE_KEY = "\u00b7 a space, \u2192 a tab"


def _shown(wanted: object, found: object) -> tuple[str, str, bool]:
    """The two sides as a drift line prints them, and whether they differ only in whitespace.

    Shortened with runs of whitespace collapsed, as usual; but when that makes the two
    sides equal (an indentation change, a trailing space), each is drawn as it is, every
    space and tab visible, so the line never reads `head has 'X', database has 'X'`.
    """
    shown_wanted, shown_found = _short(wanted), _short(found)
    if shown_wanted != shown_found:
        return shown_wanted, shown_found, False
    return _drawn(wanted), _drawn(found), True


def _drawn(value: object, limit: int = 160) -> str:
    text = (str(value) if not isinstance(value, list) else "; ".join(value)).translate(_DRAWN_WHITESPACE)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _short(value: object, limit: int = 160) -> str:
    text = " ".join(str(value).split()) if not isinstance(value, list) else "; ".join(value)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 difference`, `5 differences`: a count with its noun in the right number."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def load_head_catalog() -> Snapshot:
    head: Snapshot = json.loads(HEAD_CATALOG.read_text())
    return head


def detect_drift(connection: sa.Connection) -> list[str]:
    """How the WAHA objects of this database differ from the schema at head; empty when they do not."""
    return diff_snapshots(
        load_head_catalog(),
        waha_objects(catalog_snapshot(connection)),
        expected_label="head has",
        actual_label="database has",
    )


def render_head_catalog(connection: sa.Connection) -> str:
    """The text of head_catalog.json, from a database just migrated to head."""
    return json.dumps(waha_objects(catalog_snapshot(connection)), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
