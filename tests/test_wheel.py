"""The wheel carries the library and the revisions, exactly as the tree has them, and nothing else.

The folder is the import name (toolkit/waha_db -> waha_db) and hatchling finds every
file by its folder, so a new module, sub-package or data file (a pgTAP .sql, the head
catalog) ships without a hand-kept list; migrations/ ships as waha_db_migrations. The
harness only the tests and maintainers use (tests/, tools/) stays out.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
# What the tree holds for the wheel: where it is, and the name it installs under.
SHIPPED = {"toolkit/waha_db": "waha_db", "migrations": "waha_db_migrations"}


def tree_files() -> set[str]:
    """Every file of the library and the revisions, named as the wheel names it (no bytecode)."""
    files = set()
    for folder, package in SHIPPED.items():
        root = REPOSITORY / folder
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files.add(f"{package}/{path.relative_to(root).as_posix()}")
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel pip builds from the checkout, with the build backend of the test environment (hatchling)."""
    into = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*command, "--wheel-dir", str(into), str(REPOSITORY)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = into.glob("waha_db-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def packaged_files(wheel: zipfile.ZipFile) -> set[str]:
    return {name for name in wheel.namelist() if ".dist-info/" not in name}


def test_the_wheel_holds_every_file_of_the_library_and_the_revisions_and_nothing_else(wheel):
    packaged, tree = packaged_files(wheel), tree_files()
    assert sorted(tree - packaged) == [], "in the tree, missing from the wheel"
    assert sorted(packaged - tree) == [], "in the wheel, not in the tree"


def test_the_tree_side_of_the_comparison_covers_what_the_library_needs_at_run_time():
    """The comparison above is only as good as this list: the data files the library reads are in it."""
    tree = tree_files()
    for needed in (
        "waha_db/py.typed",
        "waha_db/lifecycle/head_catalog.json",
        "waha_db/lifecycle/pgtap/waha_schema.sql",
        "waha_db/checks/pgtemp.py",
        "waha_db_migrations/env.py",
        "waha_db_migrations/script.py.mako",
        "waha_db_migrations/versions/0001_legacy_waha_config.py",
    ):
        assert needed in tree
    assert {name.split("/")[0] for name in tree} == {"waha_db", "waha_db_migrations"}


def test_the_test_harness_and_the_maintainer_tools_stay_out_of_the_wheel(wheel):
    packaged = packaged_files(wheel)
    assert {name.split("/")[0] for name in packaged} == {"waha_db", "waha_db_migrations"}
    for harness in ("pgbouncer.py", "supabase_cli.py", "doc_blocks.py", "supabase_transcript.py"):
        assert not [name for name in packaged if name.endswith("/" + harness)]
    assert not [name for name in packaged if name.endswith((".pyc", "conftest.py"))]


def test_the_console_script_is_declared(wheel):
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    assert "waha-db = waha_db.cli:main" in wheel.read(entry_points).decode()
