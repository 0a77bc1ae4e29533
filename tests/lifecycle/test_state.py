"""Classification of a database's state from catalog facts: pure, no server."""

from __future__ import annotations

from waha_db.lifecycle.state import (
    EMPTY,
    HAND_MADE,
    LEGACY,
    MANAGED,
    UNKNOWN_REVISION,
    CatalogFacts,
    DatabaseState,
    classify,
)

REVISIONS = ["0001", "0002", "0003", "0004", "0005"]


def facts(*tables: str, revision=None, convertible=0, problems=()) -> CatalogFacts:
    return CatalogFacts(frozenset(tables), revision, convertible, tuple(problems))


def test_database_without_waha_objects_is_empty():
    state = classify(facts("public.campaigns"), REVISIONS)
    assert (state.kind, state.pending) == (EMPTY, tuple(REVISIONS))


def test_legacy_with_and_without_a_convertible_row():
    with_row = classify(facts("public.waha_config", convertible=1), REVISIONS)
    assert (with_row.kind, with_row.legacy_convertible_rows) == (LEGACY, 1)
    assert with_row.summary == "legacy V1: waha_config holds 1 WAHA server(s) to convert"
    assert "nothing to convert" in classify(facts("public.waha_config"), REVISIONS).summary


def test_hand_made_tables_without_alembic_version_are_hand_made():
    adoptable = classify(facts("public.waha_servers", "public.waha_sessions", "public.waha_config"), REVISIONS)
    assert (adoptable.kind, adoptable.adoptable) == (HAND_MADE, True)
    blocked = classify(
        facts("public.waha_servers", problems=["waha_servers.prioridade is text, expected integer"]), REVISIONS
    )
    assert blocked.adoptable is False
    assert blocked.summary.endswith("waha_servers.prioridade is text, expected integer")


def test_managed_database_lists_pending_revisions():
    state = classify(facts("public.alembic_version", "public.waha_servers", revision="0003"), REVISIONS)
    assert state == DatabaseState(MANAGED, revision="0003", pending=("0004", "0005"), version_table=True)
    assert not state.at_head
    assert state.summary == "at revision 0003, 2 pending (0004, 0005)"


def test_managed_database_at_the_last_revision_is_at_head():
    state = classify(facts("public.alembic_version", revision="0005"), REVISIONS)
    assert state.at_head and state.summary == "at head (0005)"


def test_revision_unknown_to_this_release():
    assert classify(facts("public.alembic_version", revision="0099"), REVISIONS).kind == UNKNOWN_REVISION


def test_an_empty_alembic_version_is_told_apart_from_none():
    emptied = classify(facts("public.alembic_version", "public.waha_config"), REVISIONS)
    never = classify(facts("public.waha_config"), REVISIONS)
    assert (emptied.kind, never.kind) == (LEGACY, LEGACY)
    assert emptied.recorded == "none (alembic_version is empty)"
    assert never.recorded == "none (no alembic_version)"
