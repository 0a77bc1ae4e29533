"""What each WAHA server is: its version, engine and tier, as a probe last saw them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

WAHA Core runs a single session (named `default`); only WAHA Plus runs many. A
Core server whose max_sessions is above 1 is offered by the selection for
sessions it cannot run. The server says what it is at GET /api/server/version
(`version`, `engine`, `tier`), which `waha-db servers test` and `waha-db
monitor` already ask; this revision lets them keep the answer.

- Four columns at the end of public.waha_server_health, the table of what the
  probes found: waha_version, waha_engine, waha_tier and identified_at (when the
  server last said so). NULL until a probe got an answer; a failing probe leaves
  them as they were (the last known answer). waha_servers keeps its columns: the
  seed inserts into it positionally and get_available_waha_server returns its
  row type, so a column there would change both.
- report_waha_server_version(server_id, version, engine, tier): records the
  answer, in the same way as the report functions of 0007 (SECURITY INVOKER, the
  server looked up under the caller's row security, SQLSTATE WAH20 when it is not
  visible), and leaves the health counters alone. A blank version is refused
  (22023): it is what makes an answer WAHA's. Values are trimmed and cut to 100
  characters; tier and engine are free text (WAHA adds engines over time).
- The existing policies, grants and indexes of waha_server_health cover the new
  columns; EXECUTE on the function as on the report functions.

The downgrade drops the function and the four columns (and their values).
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

VERSION = "public.report_waha_server_version(uuid, text, text, text)"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE public.waha_server_health
            ADD COLUMN waha_version text,
            ADD COLUMN waha_engine text,
            ADD COLUMN waha_tier text,
            ADD COLUMN identified_at timestamptz,
            ADD CONSTRAINT waha_server_health_identified_at_with_version_check
                CHECK ((waha_version IS NULL) = (identified_at IS NULL));
        COMMENT ON COLUMN public.waha_server_health.waha_version IS
            'The WAHA version the server last reported at /api/server/version; NULL until a probe got an answer.';
        COMMENT ON COLUMN public.waha_server_health.waha_engine IS
            'The engine the server last reported (WEBJS, NOWEB, GOWS...).';
        COMMENT ON COLUMN public.waha_server_health.waha_tier IS
            'The tier the server last reported: CORE runs a single session, PLUS many.';
        COMMENT ON COLUMN public.waha_server_health.identified_at IS
            'When the server last reported its version, engine and tier.';

        CREATE FUNCTION public.report_waha_server_version(
            server_id uuid,
            version text,
            engine text DEFAULT NULL,
            tier text DEFAULT NULL
        )
            RETURNS public.waha_server_health
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            owner_id uuid;
            reported_version text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_version.version), ''), 100);
            reported_engine text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_version.engine), ''), 100);
            reported_tier text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_version.tier), ''), 100);
            recorded public.waha_server_health;
        BEGIN
            IF reported_version IS NULL THEN
                RAISE EXCEPTION 'a WAHA version is required'
                    USING ERRCODE = '22023',
                          HINT = 'Report what GET /api/server/version answered: its version, engine and tier.';
            END IF;
            SELECT server.user_id INTO owner_id
            FROM public.waha_servers AS server
            WHERE server.id = report_waha_server_version.server_id;
            IF owner_id IS NULL THEN
                RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_version.server_id
                    USING ERRCODE = 'WAH20',
                          HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
            END IF;

            INSERT INTO public.waha_server_health AS health
                (server_id, user_id, waha_version, waha_engine, waha_tier, identified_at)
            VALUES (report_waha_server_version.server_id, owner_id,
                    reported_version, reported_engine, reported_tier, pg_catalog.now())
            ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
            SET waha_version = excluded.waha_version,
                waha_engine = excluded.waha_engine,
                waha_tier = excluded.waha_tier,
                identified_at = excluded.identified_at
            RETURNING health.* INTO recorded;
            RETURN recorded;
        END
        $$;
        COMMENT ON FUNCTION public.report_waha_server_version(uuid, text, text, text) IS
            'Records what a WAHA server reported at /api/server/version (version, engine, tier); the health counters are left alone. Row security applies; SQLSTATE WAH20 for a server that is not visible, 22023 for a blank version.';
        """
    )
    op.execute(
        f"""
        REVOKE ALL ON FUNCTION {VERSION} FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION {VERSION} TO authenticated, service_role;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON FUNCTION {VERSION} FROM anon;
            END IF;
        END
        $$;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP FUNCTION {VERSION};
        ALTER TABLE public.waha_server_health
            DROP CONSTRAINT waha_server_health_identified_at_with_version_check,
            DROP COLUMN identified_at,
            DROP COLUMN waha_tier,
            DROP COLUMN waha_engine,
            DROP COLUMN waha_version;
        """
    )
