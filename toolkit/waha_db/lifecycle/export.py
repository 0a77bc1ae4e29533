"""`waha-db export supabase`: the migrations as Supabase CLI migration files, plus pgTAP tests.

A Supabase project keeps its schema in `supabase/migrations/<version>_<name>.sql`,
applied by `supabase db push` and listed by `supabase migration list`, and its
database tests in `supabase/tests/*.sql`, run by `supabase test db`. The export
writes one migration file per revision and the pgTAP tests of the WAHA schema
there, next to the app's own files, which it never touches.

Each file is the revision's own upgrade SQL (rendered offline, as `waha-db sql`
renders it) inside one `DO` block that makes it safe to push whatever waha-db did
before:

- it takes the migrations' advisory lock and their lock timeout;
- it skips itself, changing nothing, when `alembic_version` already records this
  revision or a later one (waha-db upgraded the database, or the file was pushed
  before): the hand-over from waha-db to the CLI;
- otherwise it applies the revision and records it in `alembic_version`, as an
  upgrade does, so waha-db manages the database afterwards: the hand-over from the
  CLI to waha-db;
- from revision 0011 on (FIRST_VERIFYING_REVISION), it skips itself only for a value that
  can have followed it: its own revision or a later one in waha-db's numbering, and only
  where alembic_version is out of the API roles' reach (row security on, which revision
  0011 sets and no API role can); any other value is refused (WAH06), never taken as
  later. The files before 0011 were released trusting any value that is not one of their
  ancestors; they keep their text, and are safe once 0011 has closed alembic_version;
- it refuses to run out of order (WAH06) and on a hand-made V2.1 schema (WAH05);
- up to the conversion revision, it stops before anything is applied when the
  legacy `waha_config` holds a server and no owner was given (WAH01) or a malformed
  one (WAH02). The owner: `export --owner UUID` writes it into those files, or the
  session setting `waha.config_owner` (e.g. `?options=-c%20waha.config_owner%3DUUID`
  in the push's --db-url).

A file's name and text depend only on its revision (frozen once released), so an
export is byte-identical every time and a later release only adds files. Version
numbers come from each revision's `Create Date` (second N of that day for revision
N), each at least a second after the one before, so they sort in revision order.
A migration file already there with other contents is reported and never rewritten;
the pgTAP test files (supabase/tests/waha_*.sql) are waha-db's and follow the release.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from alembic.script import Script

from waha_db.lifecycle import migrate, revisions
from waha_db.lifecycle.migration_file import FIRST_VERIFYING_REVISION, ExportError, render_migration_file

MIGRATIONS_FOLDER = PurePosixPath("supabase/migrations")
TESTS_FOLDER = PurePosixPath("supabase/tests")
# `<14 digits>_waha_<revision>_<what>.sql`: how a waha-db migration file is told from the app's own.
WAHA_MIGRATION_NAME = re.compile(
    r"^(?P<version>[0-9]{14})_waha_(?P<revision>[0-9A-Za-z]+)_(?P<what>[0-9A-Za-z_]+)\.sql$"
)
_CREATE_DATE = re.compile(
    r"^Create Date:\s*(?P<date>\d{4}-\d{2}-\d{2})(?:[ T](?P<time>\d{2}:\d{2}(?::\d{2})?))?", re.MULTILINE
)


@dataclass(frozen=True)
class ExportedFile:
    """One file of the export: its path under the workdir, and its text."""

    path: PurePosixPath
    text: str
    revision: str | None = None  # the revision of a migration file; None for a test file


WRITTEN, UPDATED, UNCHANGED, DIFFERS, NEWER, FOREIGN = "written", "updated", "unchanged", "differs", "newer", "foreign"


@dataclass(frozen=True)
class ExportEntry:
    """One file of the workdir the export looked at: ours (written, updated, unchanged,
    differs), a newer release's waha file, or the app's own (foreign); `why` for the last three."""

    path: PurePosixPath  # relative to the workdir
    status: str
    why: str = ""


@dataclass
class ExportReport:
    """What `export_supabase` did, file by file, in the order of the folders' listing."""

    workdir: Path
    entries: list[ExportEntry] = field(default_factory=list)

    def having(self, status: str) -> list[ExportEntry]:
        return [entry for entry in self.entries if entry.status == status]

    @property
    def ok(self) -> bool:
        """Whether every file of ours is there as this release writes it (or was just written)."""
        return not self.having(DIFFERS)


# --- version numbers and names: pure, from the revisions ----------------------------------------


def create_moment(script_text: str, revision: str) -> dt.datetime | None:
    """When a revision says it was made: its `Create Date`, as UTC; a date alone is second N
    of that day for revision N (so revisions of one day keep their order). None without one."""
    found = _CREATE_DATE.search(script_text or "")
    if found is None:
        return None
    moment = dt.datetime.fromisoformat(found["date"] + (f" {found['time']}" if found["time"] else ""))
    if found["time"] is None and revision.isdigit():
        moment += dt.timedelta(seconds=int(revision))
    return moment


def migration_versions(revisions: list[tuple[str, dt.datetime | None]]) -> dict[str, str]:
    """The 14-digit version (YYYYMMDDHHMMSS) of each revision, oldest first in `revisions`.

    A revision's version is its create moment, or one second after the previous
    version when that is not later: versions always increase in revision order, and
    a revision's version depends only on it and the ones before it.
    """
    versions: dict[str, str] = {}
    previous: dt.datetime | None = None
    for revision, moment in revisions:
        if previous is not None and (moment is None or moment <= previous):
            moment = previous + dt.timedelta(seconds=1)
        if moment is None:
            raise ExportError(f"revision {revision} has no `Create Date:` line: add one to its docstring")
        versions[revision] = moment.strftime("%Y%m%d%H%M%S")
        previous = moment
    return versions


def revision_slug(script: Script) -> str:
    """`waha_servers_and_sessions` for migrations/versions/0002_waha_servers_and_sessions.py."""
    stem = Path(script.path).stem
    slug = stem[len(script.revision) + 1 :] if stem.startswith(script.revision + "_") else stem
    return re.sub(r"[^0-9A-Za-z_]+", "_", slug).strip("_") or "revision"


def migration_file_name(version: str, revision: str, slug: str) -> str:
    return f"{version}_waha_{revision}_{slug}.sql"


def _linear_history(head: str) -> list[Script]:
    """The revisions from the first up to `head`, oldest first."""
    return list(reversed(list(revisions.script_directory().iterate_revisions(head, "base"))))


def migration_files(*, owner: str | None = None, head: str = "head") -> list[ExportedFile]:
    """One Supabase CLI migration file per revision up to `head`, oldest first."""
    parsed = migrate.parse_owner(owner)
    owner = str(parsed) if parsed is not None else None
    scripts = _linear_history(head)
    order = [script.revision for script in scripts]
    versions = migration_versions(
        [(script.revision, create_moment(script.module.__doc__ or "", script.revision)) for script in scripts]
    )
    # The conversion and the revisions before it: a file's text never depends on the export's head.
    needing_owner = {script.revision for script in _linear_history(migrate.conversion_revision())}
    trusting = {script.revision for script in _linear_history(FIRST_VERIFYING_REVISION)} - {FIRST_VERIFYING_REVISION}
    files = []
    for index, script in enumerate(scripts):
        name = migration_file_name(versions[script.revision], script.revision, revision_slug(script))
        text = render_migration_file(
            script,
            order[:index],
            needs_owner=script.revision in needing_owner,
            owner=owner,
            verifying=script.revision not in trusting,
        )
        files.append(ExportedFile(MIGRATIONS_FOLDER / name, text, script.revision))
    return files


def pgtap_test_files() -> list[ExportedFile]:
    """The pgTAP tests of the WAHA schema (waha_db/lifecycle/pgtap/waha_*.sql), for `supabase test db`."""
    folder = resources.files("waha_db.lifecycle") / "pgtap"
    return [
        ExportedFile(TESTS_FOLDER / entry.name, entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.startswith("waha_") and entry.name.endswith(".sql")
    ]


def supabase_files(*, owner: str | None = None, head: str = "head") -> list[ExportedFile]:
    """Everything `export_supabase` writes: the migration files, then the pgTAP tests."""
    return migration_files(owner=owner, head=head) + pgtap_test_files()


# --- writing into a Supabase project ---------------------------------------------------------------


def plan_export(
    workdir: Path, files: list[ExportedFile], *, with_owner: Callable[[str | None], list[ExportedFile]] | None = None
) -> tuple[ExportReport, list[ExportedFile]]:
    """Compare the export with what `workdir` holds: the report, and the files to write.

    Reads only. A file of ours that is missing is to be written; one that is there with
    the same text is unchanged. A migration file whose text differs, or a waha file that
    names one of our revisions under another name, differs: applied history is never
    rewritten. A pgTAP test file (supabase/tests/waha_*.sql, waha-db's) whose text differs
    is to be updated to this release's. Waha migration files of revisions this release
    does not know (a newer release's) and the app's own files are reported and left alone.
    `with_owner(owner)`, when given, renders the export with another owner, to tell a
    file exported with another --owner from an edited one.
    """
    entries: list[ExportEntry] = []
    to_write: list[ExportedFile] = []
    ours = {item.path: item for item in files}
    exported_as = {item.revision: item.path.name for item in files if item.revision is not None}
    migrations = workdir / MIGRATIONS_FOLDER
    present = (
        {MIGRATIONS_FOLDER / entry.name for entry in migrations.iterdir() if entry.is_file()}
        if migrations.is_dir()
        else set()
    )
    for path in sorted(present | set(ours)):
        item = ours.get(path)
        if item is None:
            waha = WAHA_MIGRATION_NAME.match(path.name)
            if waha is None:
                entries.append(ExportEntry(path, FOREIGN, "not waha-db's"))
            elif waha["revision"] in exported_as:
                entries.append(
                    ExportEntry(
                        path, DIFFERS, f"revision {waha['revision']} is exported as {exported_as[waha['revision']]}"
                    )
                )
            else:
                entries.append(
                    ExportEntry(
                        path, NEWER, f"revision {waha['revision']} is unknown to this waha-db (a newer release's?)"
                    )
                )
            continue
        target = workdir / path
        if not target.exists():
            entries.append(ExportEntry(path, WRITTEN))
            to_write.append(item)
        elif target.is_file() and target.read_text(encoding="utf-8") == item.text:
            entries.append(ExportEntry(path, UNCHANGED))
        elif item.revision is None and target.is_file():
            entries.append(ExportEntry(path, UPDATED, "brought to this release's tests"))
            to_write.append(item)
        else:
            entries.append(ExportEntry(path, DIFFERS, _why_different(target, item, with_owner)))
    return ExportReport(workdir, entries), to_write


_BAKED_OWNER = re.compile(
    r"^-- Legacy owner written in by `waha-db export supabase --owner (?P<owner>[0-9a-fA-F-]+)`", re.MULTILINE
)


def _why_different(
    target: Path, item: ExportedFile, with_owner: Callable[[str | None], list[ExportedFile]] | None
) -> str:
    """Why a file of ours on disk is not the text this release writes, as far as can be told."""
    if not target.is_file():
        return "not a file"
    text = target.read_text(encoding="utf-8", errors="replace")
    baked = _BAKED_OWNER.search(text)
    theirs = baked["owner"].lower() if baked else None
    ours = _BAKED_OWNER.search(item.text)
    if with_owner is not None and theirs != (ours["owner"] if ours else None):
        if any(other.path == item.path and other.text == text for other in with_owner(theirs)):
            return (
                f"exported with --owner {theirs}: export with the same --owner"
                if theirs
                else "exported without --owner: export without it"
            )
    return "not the text this waha-db writes (edited by hand?)"


def export_supabase(workdir: Path | str = ".", *, owner: str | None = None, head: str = "head") -> ExportReport:
    """Write the migration files and pgTAP tests into `workdir`/supabase (see the module doc).

    When a migration file of ours is there with other contents, nothing is written (the
    report says which and why): an exported migration is never overwritten.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ExportError(
            f"{workdir} is not a directory: give the folder that holds (or will hold) supabase/, e.g. --workdir ."
        )
    report, to_write = plan_export(
        workdir,
        supabase_files(owner=owner, head=head),
        with_owner=functools.lru_cache(maxsize=None)(lambda other: migration_files(owner=other, head=head)),
    )
    if not report.ok:
        return report
    for item in to_write:
        target = workdir / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.text, encoding="utf-8")
    return report


def render_report(report: ExportReport) -> str:
    """What an export did, one line per file, then a summary with what to do next."""
    labels = {
        WRITTEN: "wrote",
        UPDATED: "updated",
        UNCHANGED: "unchanged",
        DIFFERS: "DIFFERS",
        NEWER: "kept",
        FOREIGN: "left alone",
    }
    lines = [
        f"{labels[entry.status]:<10} {entry.path}" + (f": {entry.why}" if entry.why else "") for entry in report.entries
    ]
    if report.ok:
        lines.append(
            f"{len(report.having(WRITTEN))} written, {len(report.having(UPDATED))} updated, "
            f"{len(report.having(UNCHANGED))} unchanged in {report.workdir / 'supabase'}. "
            "Apply: supabase db push --db-url URL; test: supabase test db (or pg_prove supabase/tests/waha_*.sql)."
        )
    else:
        lines.append(
            f"{len(report.having(DIFFERS))} file(s) differ from what this waha-db writes: nothing was written."
        )
    return "\n".join(lines)
