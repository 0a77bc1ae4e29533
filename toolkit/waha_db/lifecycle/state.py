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

waha_db.lifecycle.status composes this with the upgrade's plan and the drift
comparison into what `waha-db status` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from waha_db.lifecycle import adopt, revisions

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
    version_table: bool = False  # public.alembic_version exists (it may be empty: a downgrade to base leaves it so)

    @property
    def recorded(self) -> str:
        """What alembic_version says, for messages: `0007`, `none (alembic_version is empty)`, `none (no alembic_version)`."""
        return recorded_revision(self.revision, self.version_table)

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
            return "empty: no WAHA objects; an upgrade installs V2.1"
        if self.kind == LEGACY:
            if self.legacy_convertible_rows:
                return f"legacy V1: waha_config holds {self.legacy_convertible_rows} WAHA server(s) to convert"
            return "legacy V1: waha_config holds nothing to convert"
        if self.kind == HAND_MADE:
            if self.adoption_problems:
                return f"hand-made V2.1, not adoptable as it stands: {'; '.join(self.adoption_problems)}"
            return f"hand-made V2.1 (no revision recorded: {self.recorded.removeprefix('none (')}, adoptable"
        if self.kind == UNKNOWN_REVISION:
            return f"at revision {self.revision}, unknown to this waha-db (a newer release?)"
        if self.pending:
            return f"at revision {self.revision}, {len(self.pending)} pending ({', '.join(self.pending)})"
        return f"at head ({self.revision})"


def recorded_revision(revision: str | None, version_table: bool) -> str:
    """What alembic_version says, in words: the revision, or why there is none. Pure."""
    if revision is not None:
        return revision
    return "none (alembic_version is empty)" if version_table else "none (no alembic_version)"


def classify(facts: CatalogFacts, revisions: list[str]) -> DatabaseState:
    """The state of a database from its facts; `revisions` are the known ones, oldest first."""
    version_table = "public.alembic_version" in facts.tables
    if facts.revision is not None:
        if facts.revision not in revisions:
            return DatabaseState(UNKNOWN_REVISION, revision=facts.revision, version_table=version_table)
        pending = tuple(revisions[revisions.index(facts.revision) + 1 :])
        return DatabaseState(MANAGED, revision=facts.revision, pending=pending, version_table=version_table)
    if {"public.waha_servers", "public.waha_sessions"} & facts.tables:
        return DatabaseState(HAND_MADE, adoption_problems=tuple(facts.adoption_problems), version_table=version_table)
    if "public.waha_config" in facts.tables:
        return DatabaseState(
            LEGACY,
            pending=tuple(revisions),
            legacy_convertible_rows=facts.legacy_convertible_rows,
            version_table=version_table,
        )
    return DatabaseState(EMPTY, pending=tuple(revisions), version_table=version_table)


def read_facts(connection: sa.Connection) -> CatalogFacts:
    """The facts of `classify`, read with SELECTs only (adoption problems included when hand-made)."""
    tables = frozenset(
        connection.exec_driver_sql(
            "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'waha_legacy')"
        ).scalars()
    )
    revision = revisions.current_revision(connection) if "public.alembic_version" in tables else None
    convertible = 0
    if revision is None and "public.waha_config" in tables:
        has_url = connection.exec_driver_sql(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'public.waha_config'::regclass "
            "AND attname = 'api_url' AND NOT attisdropped)"
        ).scalar()
        if has_url:
            convertible = connection.exec_driver_sql(
                "SELECT count(*) FROM public.waha_config WHERE NULLIF(pg_catalog.btrim(api_url::text), '') IS NOT NULL"
            ).scalar_one()
    problems: tuple[str, ...] = ()
    if revision is None and {"public.waha_servers", "public.waha_sessions"} & tables:
        problems = tuple(adopt.plan_adoption(connection).problems)
    return CatalogFacts(tables, revision, convertible, problems)


def legacy_api_urls(connection: sa.Connection, table: str = "public.waha_config") -> list[str]:
    """The api_urls of the legacy rows that will be converted (rows without one are not)."""
    if connection.exec_driver_sql(f"SELECT pg_catalog.to_regclass('{table}')").scalar() is None:
        return []
    schema, name = table.split(".")
    has_api_url = connection.execute(
        sa.text(
            "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = :s AND table_name = :t AND column_name = 'api_url')"
        ),
        {"s": schema, "t": name},
    ).scalar()
    if not has_api_url:
        return []
    rows = connection.exec_driver_sql(
        f"SELECT btrim(api_url::text) FROM {table} WHERE NULLIF(btrim(api_url::text), '') IS NOT NULL ORDER BY 1"
    )
    return [url for (url,) in rows]


def legacy_ids(connection: sa.Connection) -> list[str]:
    """The ids (as text) of the legacy rows that will be converted, as the conversion reads them.

    A variant without an id column numbers its rows by their physical order, as the
    conversion does.
    """
    urls = legacy_api_urls(connection)
    if not urls:
        return []
    has_id = connection.exec_driver_sql(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = 'public.waha_config'::regclass "
        "AND attname = 'id' AND NOT attisdropped)"
    ).scalar()
    legacy_id = "id::text" if has_id else "(pg_catalog.row_number() OVER (ORDER BY ctid))::text"
    rows = connection.exec_driver_sql(
        f"SELECT legacy_id FROM (SELECT {legacy_id} AS legacy_id, api_url FROM public.waha_config) AS numbered "
        "WHERE NULLIF(pg_catalog.btrim(api_url::text), '') IS NOT NULL ORDER BY 1"
    )
    return list(rows.scalars())


def database_state(connection: sa.Connection) -> DatabaseState:
    return classify(read_facts(connection), revisions.ids())
