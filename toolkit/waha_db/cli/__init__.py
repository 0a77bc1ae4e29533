"""`waha-db`: the command line of the toolkit, for DBAs and CI.

A thin layer: each command parses its options, calls one library function, and
prints what it returns. Library errors become `click.ClickException` at the edge,
and only there (`edge.library_errors`): the user sees one message, exit status 1,
never a traceback and never a password.

One module per command group, each named after the room whose functions it calls:
`lifecycle` (upgrade, downgrade, adopt, history, sql, status, repair), `export`,
`checks` (verify, bench), `servers`, `monitor`, `sessions`; `edge` holds what they
share (the invocation's database, the errors, confirmation) and `options` the
options more than one group takes.

To add a command: write the library function first (docs/ARCHITECTURE.md says in
which room), then a function in its group's module decorated with `@click.command()`
(or the group's `.command()`) and `@library_errors`, whose docstring is its --help
text and ends with an `Example:` block; a new top-level command joins `main` below.
"""

from __future__ import annotations

import click

from waha_db.cli import checks, export, lifecycle, monitor, servers, sessions
from waha_db.cli.edge import Invocation


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="postgresql://USER:PASSWORD@HOST:PORT/DBNAME (postgres:// and postgresql+psycopg:// too); "
    "default: $DATABASE_URL.",
)
@click.version_option(package_name="waha-db")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """Take a PostgreSQL or Supabase database to the WAHA multi-server schema V2.1, and keep it there.

    The database comes from --database-url or DATABASE_URL; a password in it is never
    printed.

    \b
    Exit status:
      0  success
      1  any failure: a refusal, a failed check, a database error, a server that
         cannot be reached (one line on stderr says which)
      2  a usage error (unknown option, bad value)

    \b
    Example:
      waha-db verify                                   # CI: every check, on a throwaway PostgreSQL
      export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/app
      waha-db status
      waha-db upgrade --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44
    """
    ctx.obj = Invocation(database_url)


# Listed here, the whole command table in one place; --help lists them by name.
main.add_command(lifecycle.upgrade)
main.add_command(lifecycle.downgrade)
main.add_command(lifecycle.adopt)
main.add_command(lifecycle.history)
main.add_command(lifecycle.sql)
main.add_command(lifecycle.status)
main.add_command(lifecycle.repair)
main.add_command(checks.verify)
main.add_command(checks.bench)
main.add_command(servers.servers)
main.add_command(monitor.monitor)
main.add_command(sessions.sessions)
main.add_command(export.export)
