"""`waha-db` run in-process with click's CliRunner, as a user runs it (the `waha_db` fixture is this)."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner, Result

from waha_db import cli


def run_cli(url: sa.URL | str | None, *args: str, input: str | None = None, env: dict | None = None) -> Result:
    """Run the CLI with --database-url `url` (None: without), `input` on stdin, `env` added; the click Result."""
    prefix = (
        []
        if url is None
        else ["--database-url", url if isinstance(url, str) else url.render_as_string(hide_password=False)]
    )
    return CliRunner().invoke(cli.main, [*prefix, *args], input=input, env=env, catch_exceptions=False)
