"""What pg_catalog says about a WAHA table, read the same way by every table's tests.

Each table's test file states what it expects (its spec columns, its named
constraints, its indexes); how those facts are read from the catalog lives here
once, so a fix to a query fixes it for every table.
"""

from __future__ import annotations

import psycopg

_COLUMNS_SQL = """
SELECT attname, pg_catalog.format_type(atttypid, atttypmod), attnotnull,
       pg_catalog.pg_get_expr(adbin, adrelid)
FROM pg_catalog.pg_attribute
LEFT JOIN pg_catalog.pg_attrdef ON adrelid = attrelid AND adnum = attnum
WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum
"""

_CONSTRAINTS_SQL = """
SELECT conname, contype,
       ARRAY(SELECT a.attname FROM pg_catalog.unnest(conkey) WITH ORDINALITY AS k(number, position)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = conrelid AND a.attnum = k.number
             ORDER BY k.position)::text[]
FROM pg_catalog.pg_constraint
WHERE conrelid = %s::regclass
"""

_USER_FOREIGN_KEY_SQL = """
SELECT confrelid::regclass::text, confdeltype FROM pg_catalog.pg_constraint
WHERE conrelid = %s::regclass AND conname = %s
"""

_LEADING_INDEX_COLUMNS_SQL = """
SELECT indexrelid::regclass::text, attname
FROM pg_catalog.pg_index
JOIN pg_catalog.pg_attribute ON attrelid = indrelid AND attnum = indkey[0]
WHERE indrelid = %s::regclass
"""

# Supabase's linter rule 0001_unindexed_foreign_keys (splinter), on every WAHA table:
# a foreign key is covered only by a valid index whose leading columns are the key's
# columns in the key's order (conkey order). int2vector's text form gives a 1-based
# array; a plain ::int2[] cast would start at 0.
_UNINDEXED_FOREIGN_KEYS_SQL = """
SELECT c.conrelid::regclass::text, c.conname
FROM pg_catalog.pg_constraint AS c
WHERE c.contype = 'f'
  AND c.connamespace = 'public'::regnamespace
  AND c.conrelid::regclass::text ~ '^waha_'
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_index AS i
      WHERE i.indrelid = c.conrelid AND i.indisvalid
        AND c.conkey = (pg_catalog.string_to_array(i.indkey::text, ' ')::int2[])[1:pg_catalog.array_length(c.conkey, 1)]
  )
ORDER BY 1, 2
"""


def columns(connection: psycopg.Connection, table: str) -> list[tuple]:
    """(column, type as format_type prints it, NOT NULL, default expression) of `table`, in column order."""
    return [tuple(row) for row in connection.execute(_COLUMNS_SQL, (table,)).fetchall()]


def constraints(connection: psycopg.Connection, table: str) -> dict[str, tuple[str, list[str]]]:
    """Constraint name -> (contype, its columns in key order) for every constraint of `table`."""
    return {name: (kind, names) for name, kind, names in connection.execute(_CONSTRAINTS_SQL, (table,)).fetchall()}


def user_foreign_key(connection: psycopg.Connection, table: str) -> tuple[str, str] | None:
    """(referenced table, confdeltype) of `<table>_user_id_fkey`; None where the table has no such key."""
    name = table.rpartition(".")[2] + "_user_id_fkey"
    return connection.execute(_USER_FOREIGN_KEY_SQL, (table, name)).fetchone()


def leading_index_columns(connection: psycopg.Connection, table: str) -> dict[str, str]:
    """Index name -> the first column it is on, for every index of `table`."""
    return dict(connection.execute(_LEADING_INDEX_COLUMNS_SQL, (table,)).fetchall())


def unindexed_foreign_keys(connection: psycopg.Connection) -> list[tuple[str, str]]:
    """(table, constraint) of every foreign key of a waha_ table that no index covers in the key's order."""
    return connection.execute(_UNINDEXED_FOREIGN_KEYS_SQL).fetchall()
