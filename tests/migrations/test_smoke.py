from waha_db.lifecycle.revisions import head as head_revision


def test_v21_database_is_at_head(tx):
    assert tx.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head_revision()
