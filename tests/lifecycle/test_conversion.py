"""Which upgrades run the legacy conversion, read from the destination as Alembic gives it (no server)."""

from __future__ import annotations

import pytest

from waha_db.lifecycle import revisions
from waha_db.lifecycle.conversion import runs_the_conversion
from waha_db.lifecycle.migrate import conversion_revision


@pytest.mark.parametrize("destination", ["head", "heads", "0004:head"])
def test_an_upgrade_to_head_runs_the_conversion(destination):
    assert runs_the_conversion(destination)


def test_an_upgrade_that_stops_below_the_conversion_does_not_run_it():
    below = revisions.previous(conversion_revision())
    assert not runs_the_conversion(below)
    assert runs_the_conversion(conversion_revision())


def test_a_destination_given_as_a_tuple_of_heads_is_read_like_its_revisions():
    """Alembic gives env.py "heads" as a tuple of revision ids; pytest-alembic upgrades to "heads"."""
    below = revisions.previous(conversion_revision())
    assert runs_the_conversion((revisions.head(),))
    assert not runs_the_conversion((below,))
    assert runs_the_conversion((below, revisions.head()))


@pytest.mark.parametrize("destination", [None, "", ()])
def test_no_destination_runs_nothing(destination):
    assert not runs_the_conversion(destination)
