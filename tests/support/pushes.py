"""The export pushed with the Supabase CLI, and what the CLI's history and the catalog say afterwards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.support.databases import database_state, run_sql
from tests.support.supabase_cli import SupabaseCli
from waha_db.lifecycle.export import export_supabase

CLI_HISTORY_SCHEMA = "supabase_migrations"


def exported_workdir(directory: Path, **options: Any) -> Path:
    """`directory` (made if missing), holding `waha-db export supabase` (`options` go to export_supabase)."""
    directory.mkdir(parents=True, exist_ok=True)
    report = export_supabase(directory, **options)
    assert report.ok, report
    return directory


def push(cli: SupabaseCli, url: sa.URL | str, workdir: Path):
    """`supabase db push --yes` of the workdir's migrations onto the database; the completed process."""
    return cli.run("db", "push", "--yes", workdir=workdir, url=url)


def pushed(cli: SupabaseCli, url: sa.URL | str, workdir: Path) -> None:
    """Push, and fail the test with the CLI's words when the push fails."""
    done = push(cli, url, workdir)
    assert done.returncode == 0, f"supabase db push failed:\n{done.stdout}\n{done.stderr}"


def listed_migrations(cli: SupabaseCli, url: sa.URL, workdir: Path) -> list[tuple[str, str]]:
    """`supabase migration list`: (local, remote) version of each row; '' where a side has none."""
    done = cli.run("migration", "list", workdir=workdir, url=url)
    assert done.returncode == 0, f"supabase migration list failed:\n{done.stdout}\n{done.stderr}"
    rows = []
    for line in done.stdout.splitlines():
        cells = [cell.strip().strip("`").strip() for cell in line.split("|")]
        if len(cells) == 3 and any(re.fullmatch(r"[0-9]{14}", cell) for cell in cells[:2]):
            rows.append((cells[0], cells[1]))
    return rows


def versions_of(workdir: Path) -> list[str]:
    return sorted(path.name.split("_", 1)[0] for path in (workdir / "supabase" / "migrations").glob("*.sql"))


def recorded_by_cli(url: sa.URL) -> list[str]:
    """The versions in the CLI's history table (empty when it has none)."""
    if run_sql(url, "SELECT to_regclass('supabase_migrations.schema_migrations')")[0][0] is None:
        return []
    return [row[0] for row in run_sql(url, "SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")]


def without_cli_history(snapshot: dict) -> dict:
    """A catalog snapshot minus the Supabase CLI's own history schema (the only thing a push adds)."""

    def kept(name: str) -> bool:
        return name != CLI_HISTORY_SCHEMA and not name.startswith(CLI_HISTORY_SCHEMA + ".")

    return {
        section: [name for name in items if kept(name)]
        if isinstance(items, list)
        else {name: value for name, value in items.items() if kept(name)}
        for section, items in snapshot.items()
    }


def schema_of(url: sa.URL) -> dict:
    """The whole catalog of the database (tables, constraints, indexes, functions, policies, grants...),
    the Supabase CLI's history left out."""
    return without_cli_history(database_state(url)["catalog"])
