"""The revisions of the migrations, as Alembic's script directory holds them.

The one place that knows the revisions: their ids, order and titles, which one is
head, which one a name such as "head" or "0003" stands for, and which one a
database is at (the one reader of `alembic_version`). No revision id is written in
the toolkit's code: what a revision does (create a table, convert the legacy
waha_config) is read from its own SQL by waha_db.lifecycle.migrate.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from waha_db.errors import UserError

# The repository checkout the library runs from (toolkit/waha_db/lifecycle/revisions.py is
# three folders below it); not a checkout when the package is installed from a wheel.
CHECKOUT_ROOT = Path(__file__).resolve().parents[3]


def _migrations_dir() -> Path:
    """The revisions: migrations/ of the checkout (an editable install, a run from the
    repository), else the copy the wheel installs as the package `waha_db_migrations`."""
    checkout = CHECKOUT_ROOT / "migrations"
    if (checkout / "env.py").is_file() and (CHECKOUT_ROOT / "pyproject.toml").is_file():
        return checkout
    spec = importlib.util.find_spec("waha_db_migrations")
    if spec is None or spec.origin is None:
        raise ImportError("the revisions are missing: reinstall waha-db (its wheel carries them as waha_db_migrations)")
    return Path(spec.origin).resolve().parent


MIGRATIONS_DIR = _migrations_dir()


class UnknownRevision(CommandError, UserError):
    """A revision name that is not one of the migrations'; the message lists the known ones."""


@dataclass(frozen=True)
class Revision:
    id: str
    title: str  # the first line of the revision's docstring


@functools.cache
def script_directory() -> ScriptDirectory:
    """Alembic's view of the migrations shipped with the package (they never change while we run)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def history() -> list[Revision]:
    """Every revision, oldest first."""
    return [
        Revision(script.revision, (script.doc or "").strip().splitlines()[0].rstrip("."))
        for script in reversed(list(script_directory().walk_revisions()))
    ]


def describe_history(current: str | None = None) -> list[str]:
    """`waha-db history`: one line per revision, oldest first; `current` marked `*`, and head."""
    top = head()
    lines = []
    for revision in history():
        marks = [mark for mark, on in (("current", revision.id == current), ("head", revision.id == top)) if on]
        line = f"{'*' if revision.id == current else ' '} {revision.id}  {revision.title}"
        lines.append(line + (f"  ({', '.join(marks)})" if marks else ""))
    return lines


def ids() -> list[str]:
    """Every revision id, oldest first."""
    return [revision.id for revision in history()]


def head() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); expected one")
    return heads[0]


def base() -> str:
    """The first revision: the legacy V1 state (waha_config created only where missing)."""
    return ids()[0]


def title(revision: str) -> str:
    return next(found.title for found in history() if found.id == revision)


def previous(revision: str) -> str | None:
    """The revision below `revision`; None below the first one."""
    below = script_directory().get_revision(revision).down_revision
    if below is None or isinstance(below, str):
        return below
    raise RuntimeError(f"revision {revision} merges {', '.join(below)}: the migrations are expected to be one line")


def resolve(name: str) -> str | None:
    """The revision id `name` stands for ("head", "base", "0003"...); None for base.

    UnknownRevision, listing the known revisions, for anything else.
    """
    if name == "base":
        return None
    try:
        found = script_directory().get_revision(name)
    except (RevisionError, CommandError):
        found = None
    if found is None or not isinstance(found.revision, str):  # a name of several revisions ("heads") is none
        raise UnknownRevision(f"no revision {name!r}: the revisions are {', '.join(ids())} (or head, base)")
    return found.revision


def between(upper: str | None, lower: str | None) -> list[str]:
    """The revisions above `lower` up to `upper`, oldest first (what an upgrade from `lower` to `upper` runs)."""
    known = ids()
    start = known.index(lower) + 1 if lower is not None else 0
    end = known.index(upper) + 1 if upper is not None else 0
    return known[start:end]


def current_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in alembic_version; None when there is none (no table, or an empty one).

    Reads only: safe on a production database.
    """
    readable = connection.exec_driver_sql(
        "SELECT pg_catalog.has_table_privilege(c.oid, 'SELECT'), pg_catalog.pg_get_userbyid(c.relowner), current_user "
        "FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass('public.alembic_version')"
    ).one_or_none()
    if readable is None:
        return None
    may_read, owner, role = readable
    if not may_read:
        raise UserError(unreadable_version_table(role, owner))
    return connection.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar()


def unreadable_version_table(role: str, owner: str) -> str:
    """Why a role that may not read alembic_version cannot be told where the database stands, and what to do. Pure."""
    return (
        f"the role {role} may not read public.alembic_version, where the revision of the WAHA schema is recorded: "
        f"since revision 0011 only its owner ({owner}) and superusers may, so that the app's API roles cannot "
        f"change it. Run waha-db as {owner} (the role that upgraded this database), e.g. "
        f"--database-url postgresql://{owner}@HOST:PORT/DBNAME. Nothing was read or changed."
    )
