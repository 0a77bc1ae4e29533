"""`export`: the migrations in the form another tool applies them (waha_db.lifecycle.export)."""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from waha_db.cli.edge import library_errors
from waha_db.cli.options import OWNER
from waha_db.lifecycle import export as exporting


@click.group()
def export() -> None:
    """Write the migrations in the form another tool applies them.

    \b
    Example:
      waha-db export supabase --workdir .
    """


@export.command("supabase")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The folder that holds supabase/ (as the Supabase CLI's --workdir).",
)
@click.option(
    "--owner",
    type=OWNER,
    metavar="UUID",
    help="Write the owner of the server converted from a legacy waha_config into the files that need it.",
)
@library_errors
def export_supabase(workdir: Path, owner: uuid.UUID | None) -> None:
    """Write one Supabase CLI migration per revision, and pgTAP tests, into WORKDIR/supabase.

    supabase/migrations/<version>_waha_<revision>_<what>.sql: each revision as
    `waha-db upgrade` applies it, for `supabase db push`. A file skips itself on a
    database where waha-db already applied its revision, and records what it applies
    in alembic_version, so waha-db and the Supabase CLI can take turns. Versions are
    fixed per revision: every export writes the same files, and a later release only
    adds some. supabase/tests/waha_*.sql: pgTAP tests of the schema, for
    `supabase test db` or pg_prove.

    The app's own files are left alone. A waha file that differs from what this
    release writes is reported, and then nothing is written (exit 1).

    A legacy waha_config with a server to convert needs its owner: give --owner, or
    push with ?options=-c%20waha.config_owner%3DUUID in the --db-url; without one the
    push stops before applying anything.

    \b
    Example:
      waha-db export supabase                           # into ./supabase
      waha-db export supabase --workdir app --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
      supabase db push --db-url "$DATABASE_URL"
    """
    report = exporting.export_supabase(workdir, owner=None if owner is None else str(owner))
    click.echo(exporting.render_report(report))
    if not report.ok:
        raise click.ClickException(
            "a waha file differs from what this waha-db writes, so nothing was written: export as before "
            "(the same --owner), or put the file back as exported (remove it if it was never pushed), then export again"
        )
