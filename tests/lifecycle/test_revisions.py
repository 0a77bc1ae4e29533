"""The revision history: linear, one head, short ids that match the file names, a downgrade for each."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from waha_db.lifecycle import revisions


def revisions_base_first():
    return list(reversed(list(revisions.script_directory().walk_revisions())))


def test_history_has_exactly_one_head_and_one_base():
    script = revisions.script_directory()
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1


def test_history_is_linear_with_consecutive_short_ids():
    revisions = revisions_base_first()
    ids = [revision.revision for revision in revisions]
    assert ids == [f"{number:04d}" for number in range(1, len(ids) + 1)]
    assert [revision.down_revision for revision in revisions] == [None, *ids[:-1]]
    assert all(not revision.branch_labels and not revision.dependencies for revision in revisions)


def test_each_file_is_named_after_its_revision():
    for revision in revisions_base_first():
        name = Path(revision.path).name
        assert re.fullmatch(rf"{revision.revision}_[a-z0-9_]+\.py", name), name


def test_each_revision_has_a_downgrade_that_does_something():
    """An empty `pass` downgrade would make the stairway test trivially pass for that step."""
    for revision in revisions_base_first():
        tree = ast.parse(Path(revision.path).read_text())
        functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "upgrade" in functions and "downgrade" in functions, revision.path
        body = functions["downgrade"].body
        assert not all(
            isinstance(statement, ast.Pass)
            or (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
            for statement in body
        ), f"{revision.path}: downgrade() does nothing"


def test_head_revision_helper_agrees_with_the_scripts():
    assert revisions.head() == revisions_base_first()[-1].revision
