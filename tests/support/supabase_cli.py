"""The Supabase toolchain run for real against throwaway databases: the Supabase CLI
(`supabase db push`, `migration list`, `db lint`) and pgTAP with `pg_prove`.

For the tests and tools/supabase_transcript.py. Where the tools come from:
- the Supabase CLI: `WAHA_DB_SUPABASE_CLI`, else the project-local install that
  .ci/run makes from .ci/tools/package-lock.json (`npm ci --prefix .ci/tools`), else PATH;
- pg_prove and pgTAP: Debian's `libtap-parser-sourcehandler-pgtap-perl` and
  `postgresql-NN-pgtap` (the throwaway server runs Debian's binaries, so it finds
  the extension).

The CLI runs with its telemetry and update check off and a HOME of its own, so it
talks to nothing but the database it is given, and leaves nothing in the user's home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from waha_db.database import conninfo, mask_password

REPOSITORY = Path(__file__).resolve().parents[2]
CI_TOOLS = REPOSITORY / ".ci" / "tools"
# The version the tests run, as .ci/tools/package.json pins it (its lock file pins the rest).
SUPABASE_CLI_VERSION = json.loads((CI_TOOLS / "package.json").read_text(encoding="utf-8"))["dependencies"]["supabase"]
LOCAL_CLI = CI_TOOLS / "node_modules" / ".bin" / "supabase"
CLI_INSTALL_HINT = (
    f"the Supabase CLI was not found (WAHA_DB_SUPABASE_CLI, {LOCAL_CLI}, PATH): install it into the project with "
    f"`npm ci --prefix .ci/tools` (supabase@{SUPABASE_CLI_VERSION}, what .ci/run does)"
)
PG_PROVE_INSTALL_HINT = (
    "pg_prove was not found on PATH: install it with pgTAP, "
    "`apt-get install libtap-parser-sourcehandler-pgtap-perl postgresql-15-pgtap` (what .ci/run does)"
)


class ToolNotFound(RuntimeError):
    """A tool of the Supabase toolchain is not installed; the message says how to install it."""


def find_supabase_cli() -> Path:
    if os.environ.get("WAHA_DB_SUPABASE_CLI"):
        configured = Path(os.environ["WAHA_DB_SUPABASE_CLI"])
        if not os.access(configured, os.X_OK):
            raise ToolNotFound(
                f"WAHA_DB_SUPABASE_CLI points at {configured}, which is not an executable. {CLI_INSTALL_HINT}"
            )
        return configured
    if os.access(LOCAL_CLI, os.X_OK):
        return LOCAL_CLI
    on_path = shutil.which("supabase")
    if on_path:
        return Path(on_path)
    raise ToolNotFound(CLI_INSTALL_HINT)


def find_pg_prove() -> Path:
    found = shutil.which("pg_prove")
    if found is None:
        raise ToolNotFound(PG_PROVE_INSTALL_HINT)
    return Path(found)


def cli_url(url: URL) -> str:
    """The URL to give `--db-url`: libpq form, TLS off (the throwaway server has none). Holds the password."""
    separator = "&" if "?" in conninfo(url) else "?"
    return conninfo(url) + f"{separator}sslmode=disable"


class SupabaseCli:
    """The Supabase CLI, run as a subprocess with a HOME of its own and no telemetry."""

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or find_supabase_cli()
        self._home = Path(tempfile.mkdtemp(prefix="waha-db-supabase-home-"))

    def environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("SUPABASE_")}
        environment.update(
            HOME=str(self._home),
            SUPABASE_TELEMETRY_DISABLED="1",  # otherwise it reports to Supabase (a DNS look-up of an outside name)
            DO_NOT_TRACK="1",
            SUPABASE_NO_UPDATE_NOTIFIER="1",
        )
        return environment

    def run(
        self,
        *args: str,
        workdir: Path,
        url: URL | str | None = None,
        remote: URL | None = None,
        timeout: float = 300,
        merged: bool = False,
    ) -> subprocess.CompletedProcess:
        """`supabase ARGS --workdir WORKDIR [--db-url URL | --remote=URL]`; output captured, the password masked in it.

        `remote` is for the commands that take the database as `--remote=URL` (`db advisors`).
        `merged`: stderr goes into stdout, in the order the CLI wrote them (as a terminal shows them).
        """
        command = [str(self.binary), *args, "--workdir", str(workdir)]
        password = None
        if url is not None:
            password = url.password if isinstance(url, URL) else None
            command += ["--db-url", cli_url(url) if isinstance(url, URL) else url]
        if remote is not None:
            password = remote.password
            command.append(f"--remote={cli_url(remote)}")
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
            env=self.environment(),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        secret = str(password) if password else None
        return subprocess.CompletedProcess(
            [mask_password(part, secret) for part in command],
            done.returncode,
            mask_password(done.stdout, secret),
            mask_password(done.stderr or "", secret),
        )

    def version(self) -> str:
        return subprocess.run(
            [str(self.binary), "--version"],
            capture_output=True,
            text=True,
            env=self.environment(),
            timeout=60,
            check=True,
        ).stdout.strip()

    def close(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)


# Where `supabase test db` puts pgTAP, and the search_path Supabase gives every database.
PGTAP_SETUP_SQL = """
CREATE SCHEMA IF NOT EXISTS extensions;
GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;
CREATE EXTENSION IF NOT EXISTS pgtap WITH SCHEMA extensions;
DO $$
BEGIN
    EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = "$user", public, extensions',
                              pg_catalog.current_database());
END
$$;
"""


def install_pgtap(connection: sa.Connection) -> None:
    """pgTAP in schema extensions, on the database's search_path, as on Supabase (the roles must exist)."""
    connection.exec_driver_sql(PGTAP_SETUP_SQL.replace("%", "%%"))  # the driver's placeholders are %s


def pg_prove(url: URL, files: list[Path], *, timeout: float = 300) -> subprocess.CompletedProcess:
    """`pg_prove` over the files, on the database of `url` (psql's environment variables carry the connection)."""
    environment = dict(
        os.environ,
        PGHOST=url.host or "127.0.0.1",
        PGPORT=str(url.port or 5432),
        PGUSER=url.username or "postgres",
        PGDATABASE=url.database or "postgres",
    )
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    return subprocess.run(
        [str(find_pg_prove()), *map(str, files)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
