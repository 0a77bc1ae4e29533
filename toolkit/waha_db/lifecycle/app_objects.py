"""What the application built on its hand-made WAHA tables, which adoption keeps.

Adoption rebuilds `waha_servers` and `waha_sessions` (waha_db.lifecycle.adopt), and
dropping the hand-made tables drops everything that hangs on them. Some of that is the
application's, not the seed's, and it relies on it:

- its triggers (an audit trail): created again on the rebuilt table as they were,
  enabled as they were, once the rows are copied (they never see the copy). One with
  the name of one of V2.1's triggers is replaced by V2.1's; one that runs a function of
  V2.1's (the hand-made updated_at trigger) is dropped, V2.1's own trigger doing that;
- its row-security policies ("Admins read all"): created again as they were. One with
  the name of one of V2.1's policies is replaced by V2.1's;
- the tables' memberships of publications: Supabase Realtime sends the changes of the
  tables listed in `supabase_realtime`, and a dropped table leaves it silently. Each is
  added again, with its column list and row filter. A publication FOR ALL TABLES (or
  for the whole schema) takes the rebuilt table by itself;
- REPLICA IDENTITY (Realtime's old records need FULL).

`read` reads them from the catalog while the tables are still in public (so their
definitions name public's tables), and returns the plan's lines, the statements that
put them back, and what blocks that (a publication the role running adoption does not
own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

_TRIGGERS = """
SELECT c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled, p.proname
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
WHERE c.oid = ANY (%(tables)s::pg_catalog.regclass[]) AND NOT t.tgisinternal
ORDER BY 1, 2
"""

_POLICIES = """
SELECT c.relname, p.polname,
       pg_catalog.format(
           'CREATE POLICY %%I ON public.%%I AS %%s FOR %%s TO %%s%%s%%s', p.polname, c.relname,
           CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
           CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                         WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
           (SELECT pg_catalog.string_agg(
                       CASE WHEN role = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(role)) END,
                       ', ' ORDER BY role)
            FROM pg_catalog.unnest(p.polroles) AS role),
           COALESCE(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', ''),
           COALESCE(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')', ''))
FROM pg_catalog.pg_policy AS p
JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
WHERE c.oid = ANY (%(tables)s::pg_catalog.regclass[])
ORDER BY 1, 2
"""

# Explicit memberships (pg_publication_rel), with the column list and row filter PostgreSQL 15 added.
_PUBLICATIONS = """
SELECT c.relname, b.pubname,
       pg_catalog.pg_has_role(b.pubowner, 'USAGE') AS may_alter,
       pg_catalog.pg_get_userbyid(b.pubowner),
       (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
        FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = r.prrelid AND a.attnum = ANY (r.prattrs)),
       pg_catalog.pg_get_expr(r.prqual, r.prrelid)
FROM pg_catalog.pg_publication_rel AS r
JOIN pg_catalog.pg_publication AS b ON b.oid = r.prpubid
JOIN pg_catalog.pg_class AS c ON c.oid = r.prrelid
WHERE c.oid = ANY (%(tables)s::pg_catalog.regclass[])
ORDER BY 1, 2
"""

_REPLICA_IDENTITY = """
SELECT c.relname, c.relreplident,
       (SELECT i.relname FROM pg_catalog.pg_index AS x JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
        WHERE x.indrelid = c.oid AND x.indisreplident)
FROM pg_catalog.pg_class AS c
WHERE c.oid = ANY (%(tables)s::pg_catalog.regclass[]) AND c.relreplident <> 'd'
ORDER BY 1
"""

_ENABLED = {"D": "DISABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class AppObjects:
    """The plan's words about the application's objects, the statements that put them back, what blocks that."""

    actions: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read(connection: sa.Connection, tables: list[str], head: dict[str, dict[str, object]]) -> AppObjects:
    """The application's objects on the hand-made `tables` of public, as adoption keeps them (module doc)."""
    found = AppObjects()
    names = [f"public.{table}" for table in tables]
    ours = {name.split("(")[0].split(".", 1)[1] for name in head.get("functions", {})}
    for table, name, definition, enabled, function in connection.exec_driver_sql(_TRIGGERS, {"tables": names}):
        if f"public.{table}.{name}" in head.get("triggers", {}):
            continue  # V2.1's own name: the comparison with head says whether it differs (it is replaced)
        if function in ours:
            found.actions.append(
                f"drop hand-made trigger {name} on {table}: it runs {function}(), as V2.1's own trigger does"
            )
            continue
        found.actions.append(
            f"keep the app's trigger {name} on {table}, made again on the rebuilt table as it was "
            "(not part of V2.1: `waha-db status` lists it as a difference from head; repair leaves it)"
        )
        found.statements.append(definition)
        if enabled in _ENABLED:
            found.statements.append(f"ALTER TABLE public.{table} {_ENABLED[enabled]} {_identifier(name)}")
    for table, name, definition in connection.exec_driver_sql(_POLICIES, {"tables": names}):
        if f"public.{table}.{name}" in head.get("policies", {}):
            continue
        found.actions.append(
            f'keep the app\'s policy "{name}" on {table}, made again as it was '
            "(not part of V2.1: `waha-db status` lists it as a difference from head, and `waha-db repair` "
            "would drop it, as it drops every policy V2.1 does not have)"
        )
        found.statements.append(definition)
    for table, publication, may_alter, owner, columns, row_filter in connection.exec_driver_sql(
        _PUBLICATIONS, {"tables": names}
    ):
        if not may_alter:
            found.problems.append(
                f"publication {publication} lists {table}: adoption must add the rebuilt table to it again, which "
                f"takes its owner ({owner}); run `waha-db adopt` as {owner}"
            )
            continue
        listed = f" ({columns})" if columns else ""
        where = f" WHERE ({row_filter})" if row_filter else ""
        found.actions.append(
            f"keep {table} in publication {publication} (Supabase Realtime's, when supabase_realtime): "
            "added again to the rebuilt table"
        )
        found.statements.append(f"ALTER PUBLICATION {_identifier(publication)} ADD TABLE public.{table}{listed}{where}")
    for table, identity, index in connection.exec_driver_sql(_REPLICA_IDENTITY, {"tables": names}):
        if identity == "f":
            found.actions.append(f"keep REPLICA IDENTITY FULL of {table}")
            found.statements.append(f"ALTER TABLE public.{table} REPLICA IDENTITY FULL")
        elif identity == "n":
            found.actions.append(f"keep REPLICA IDENTITY NOTHING of {table}")
            found.statements.append(f"ALTER TABLE public.{table} REPLICA IDENTITY NOTHING")
        elif index and f"public.{table}.{index}" in head.get("indexes", {}):
            found.actions.append(f"keep REPLICA IDENTITY USING INDEX {index} of {table}")
            found.statements.append(f"ALTER TABLE public.{table} REPLICA IDENTITY USING INDEX {_identifier(index)}")
        else:
            found.actions.append(
                f"drop REPLICA IDENTITY USING INDEX {index} of {table}: V2.1 has no such index; the primary key "
                "identifies the rows again"
            )
    return found
