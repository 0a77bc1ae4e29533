"""pytest-alembic's own tests, as the field's CI runs them, on the packaged migrations.

pytest-alembic is how a project's CI checks Alembic migrations: one head, an upgrade
from nothing to head, models that match what the migrations build, every revision
undone and redone, and (experimental) a downgrade that leaves no trace. Imported here,
they run on every run of the suite, on a plain database and on a Supabase-like one
(waha_db.checks.supabase), through alembic.ini and migrations/env.py with the database
handed over as pytest-alembic hands it: its `alembic_engine` fixture, put in
config.attributes["connection"] (an Engine, or for the experimental test a wrapper of
a connection inside the test's transaction).
"""

from __future__ import annotations

import pytest
from alembic.config import Config
from pytest_alembic.config import Config as PytestAlembicConfig
from pytest_alembic.executor import CommandExecutor
from pytest_alembic.tests import (  # noqa: F401  (collected by pytest: they run here)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace  # noqa: F401
from pytest_alembic.tests.experimental.downgrade_leaves_no_trace import WrappingConnection

from tests.support.databases import recorded_revisions
from tests.support.factories import LEGACY_OWNER
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.database import create_engine
from waha_db.lifecycle import migrate, revisions


@pytest.fixture
def alembic_config() -> Config:
    """The repository's alembic.ini, as a DBA's `alembic` command reads it, without touching pytest's logging."""
    config = Config(str(revisions.CHECKOUT_ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(params=["empty", "supabase_empty"])
def alembic_engine(request, fresh_database, monkeypatch):
    """A fresh database with nothing of ours in it: plain PostgreSQL, then Supabase-like."""
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the handed-over engine alone says where
    engine = create_engine(fresh_database(request.param))
    yield engine
    engine.dispose()


# --- env.py driven exactly as pytest-alembic drives it ------------------------------------------
#
# pytest-alembic's CommandExecutor runs env.py under an EnvironmentContext of its own, with the
# destination "heads" (Alembic gives env.py a tuple of revision ids for it), never naming the
# command, and the database in config.attributes["connection"]: an Engine, or a wrapper whose
# connect() gives back a connection inside the caller's transaction.


def executor_for(alembic_config: Config, connection, **attributes) -> CommandExecutor:
    executor = CommandExecutor.from_config(PytestAlembicConfig(alembic_config=alembic_config))
    executor.configure(connection=connection, **attributes)
    return executor


def test_upgrade_to_heads_runs_the_checks_before_the_conversion(fresh_database, alembic_config, monkeypatch):
    """A legacy row changed after a rollback is refused, not silently kept, when the destination is "heads"."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = fresh_database("empty", LEGACY_V1_SQL)
    engine = create_engine(url)
    try:
        executor = executor_for(alembic_config, engine, owner=LEGACY_OWNER)
        executor.upgrade("heads")
        assert recorded_revisions(url) == [revisions.head()]
        executor.downgrade("0004")
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE public.waha_config SET api_url = 'https://new-legacy.example'")
        del executor.alembic_config.attributes["owner"]
        with pytest.raises(migrate.LegacyConversionRefused, match="disagree") as refused:
            executor.upgrade("heads")
        assert "api_url" in str(refused.value)
    finally:
        engine.dispose()
    assert recorded_revisions(url) == ["0004"]


@pytest.mark.parametrize("caller_ends_with", ["commit", "rollback"])
def test_connection_of_the_callers_transaction_handed_over_as_an_engine(
    fresh_database, alembic_config, monkeypatch, caller_ends_with
):
    """pytest-alembic's experimental tests hand over their transaction's connection wrapped as an engine."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = fresh_database("supabase_empty")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.begin()
            executor = executor_for(alembic_config, WrappingConnection(connection))
            executor.upgrade("heads")
            assert connection.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar() == (
                revisions.head()
            )
            assert recorded_revisions(url) == []  # not committed: the transaction is the caller's
            getattr(connection, caller_ends_with)()
    finally:
        engine.dispose()
    assert recorded_revisions(url) == ([revisions.head()] if caller_ends_with == "commit" else [])
