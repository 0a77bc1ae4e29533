"""Fixtures of the Supabase toolchain tests: the real Supabase CLI, and this release's export.

A test that needs a tool fails, with the command that installs it, when the tool is
missing: it never skips (.ci/run installs them all). Deselect them explicitly on a
machine without them: `pytest -m "not supabase_cli and not pgtap and not pgbouncer"`.
Pushing and reading back are tests/support/pushes.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pushes import exported_workdir
from tests.support.supabase_cli import SupabaseCli, ToolNotFound


@pytest.fixture(scope="session")
def supabase_cli():
    try:
        cli = SupabaseCli()
    except ToolNotFound as missing:
        pytest.fail(str(missing), pytrace=False)
    yield cli
    cli.close()


@pytest.fixture(scope="session")
def export(tmp_path_factory) -> Path:
    """A workdir holding this release's export, shared by the tests that only push it."""
    return exported_workdir(tmp_path_factory.mktemp("export"))
