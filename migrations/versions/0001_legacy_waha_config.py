"""Legacy V1 state: the singleton waha_config.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Created only where missing, so a legacy database (which already has it, in any of
its historical variants) upgrades with a plain `upgrade head`. The table comment
marks a table this revision created; the downgrade drops only such a table and
leaves a legacy one (and its data) alone.
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CREATED_MARKER = "waha-db 0001 - legacy WAHA configuration (V1 singleton)"


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF pg_catalog.to_regclass('public.waha_config') IS NULL THEN
                CREATE TABLE public.waha_config (
                    id integer PRIMARY KEY CHECK (id = 1),
                    api_url text,
                    api_key text,
                    webhook_url text,
                    webhook_secret text,
                    timeout integer,
                    retry_attempts integer,
                    rate_limit integer,
                    created_at timestamptz DEFAULT pg_catalog.now(),
                    updated_at timestamptz DEFAULT pg_catalog.now()
                );
                COMMENT ON TABLE public.waha_config IS '{CREATED_MARKER}';
                REVOKE ALL ON TABLE public.waha_config FROM PUBLIC;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF pg_catalog.obj_description(pg_catalog.to_regclass('public.waha_config'), 'pg_class')
               IS NOT DISTINCT FROM '{CREATED_MARKER}' THEN
                DROP TABLE public.waha_config;
            END IF;
        END
        $$
        """
    )
