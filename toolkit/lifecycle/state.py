"""What state a database is in, with respect to the WAHA schema.

Pure classification (`classify`) from a few catalog facts (`CatalogFacts`), tested
without a server; `read_facts` takes those facts from a connection with plain
SELECTs. The states:

- ``empty``: no WAHA object (other tables of the app may exist): `upgrade` builds V2.1;
- ``legacy``: the V1 singleton waha_config, never migrated: `upgrade` converts it
  (with an owner when it holds a convertible row);
- ``hand_made``: V2.1 tables made by hand from the seed, no alembic_version:
  `adopt` (adoptable, or the problems that block it);
- ``managed``: a revision recorded, N pending (0 = at head);
- ``unknown_revision``: a revision this toolkit does not know (a newer release?).

The CLI composes this with its drift comparison (a managed database at head whose
objects differ from head is "drifted"): `DatabaseState` is a frozen dataclass, so
extend it with `dataclasses.replace` or wrap it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

EMPTY, LEGACY, HAND_MADE, MANAGED, UNKNOWN_REVISION = "empty", "legacy", "hand_made", "managed", "unknown_revision"


@dataclass(frozen=True)
class CatalogFacts:
    """What the classification needs to know about a database."""

    tables: frozenset[str]  # schema-qualified: "public.waha_servers", "public.alembic_version", ...
    revision: str | None  # the revision in alembic_version; None when the table is missing or empty
    legacy_convertible_rows: int = 0  # rows of public.waha_config with a non-blank api_url
    adoption_problems: tuple[str, ...] = ()  # from waha_db.lifecycle.adopt.plan_adoption, for hand-made databases


@dataclass(frozen=True)
class DatabaseState:
    kind: str
    revision: str | None = None
    pending: tuple[str, ...] = ()  # revisions an upgrade to head would run, oldest first
    legacy_convertible_rows: int = 0
    adoption_problems: tuple[str, ...] = field(default=())

    @property
    def at_head(self) -> bool:
        return self.kind == MANAGED and not self.pending

    @property
    def adoptable(self) -> bool | None:
        return not self.adoption_problems if self.kind == HAND_MADE else None

    @property
    def summary(self) -> str:
        """One line for `waha-db status`."""
        if self.kind == EMPTY:
            return "empty: no WAHA objects; `waha-db upgrade` installs V2.1"
        if self.kind == LEGACY:
            if self.legacy_convertible_rows:
                return (f"legacy V1: waha_config holds {self.legacy_convertible_rows} WAHA server(s) to convert; "
                        "`waha-db upgrade --owner UUID`")
            return "legacy V1: waha_config holds nothing to convert; `waha-db upgrade`"
        if self.kind == HAND_MADE:
            if self.adoption_problems:
                return f"hand-made V2.1, not adoptable as it stands: {'; '.join(self.adoption_problems)}"
            return "hand-made V2.1 (no alembic_version), adoptable: `waha-db adopt`"
        if self.kind == UNKNOWN_REVISION:
            return f"at revision {self.revision}, unknown to this waha-db (a newer release?)"
        if self.pending:
            return f"at revision {self.revision}, {len(self.pending)} pending ({', '.join(self.pending)}): `waha-db upgrade`"
        return f"at head ({self.revision})"


def classify(facts: CatalogFacts, revisions: list[str]) -> DatabaseState:
    """The state of a database from its facts; `revisions` are the known ones, oldest first."""
    if facts.revision is not None:
        if facts.revision not in revisions:
            return DatabaseState(UNKNOWN_REVISION, revision=facts.revision)
        pending = tuple(revisions[revisions.index(facts.revision) + 1:])
        return DatabaseState(MANAGED, revision=facts.revision, pending=pending)
    if {"public.waha_servers", "public.waha_sessions"} & facts.tables:
        return DatabaseState(HAND_MADE, adoption_problems=tuple(facts.adoption_problems))
    if "public.waha_config" in facts.tables:
        return DatabaseState(LEGACY, pending=tuple(revisions), legacy_convertible_rows=facts.legacy_convertible_rows)
    return DatabaseState(EMPTY, pending=tuple(revisions))


def read_facts(connection: sa.Connection) -> CatalogFacts:
    """The facts of `classify`, read with SELECTs only (adoption problems included when hand-made)."""
    tables = frozenset(connection.exec_driver_sql(
        "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'waha_legacy')"
    ).scalars())
    revision = None
    if "public.alembic_version" in tables:
        revision = connection.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar()
    convertible = 0
    if revision is None and "public.waha_config" in tables:
        has_url = connection.exec_driver_sql(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'public.waha_config'::regclass "
            "AND attname = 'api_url' AND NOT attisdropped)"
        ).scalar()
        if has_url:
            convertible = connection.exec_driver_sql(
                "SELECT count(*) FROM public.waha_config WHERE NULLIF(pg_catalog.btrim(api_url::text), '') IS NOT NULL"
            ).scalar()
    problems: tuple[str, ...] = ()
    if revision is None and {"public.waha_servers", "public.waha_sessions"} & tables:
        from waha_db.lifecycle.adopt import plan_adoption

        problems = tuple(plan_adoption(connection).problems)
    return CatalogFacts(tables, revision, convertible, problems)


def known_revisions() -> list[str]:
    """The migrations' revisions, oldest first."""
    from waha_db.lifecycle.migrate import script_directory

    return [script.revision for script in reversed(list(script_directory().walk_revisions()))]


def database_state(connection: sa.Connection) -> DatabaseState:
    return classify(read_facts(connection), known_revisions())
