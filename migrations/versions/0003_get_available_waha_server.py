"""get_available_waha_server(user_uuid, excluded_server_ids): the best server for a new session.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Candidates: the user's active servers with a free slot, minus the excluded ones
(the app's fallback: after a server fails, ask again without it). Order: priority
DESC, then load ASC as an exact ratio, then more free slots, then the oldest, then
id, so ties are deterministic. Zero rows, never an error, when nothing qualifies.

The load is computed in numeric with 30 decimal places: two different ratios of
32-bit integers differ by more than 1e-19, so the comparison is exact (integer
division would rank 1/4 and 5/10 equal).
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION public.get_available_waha_server(
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

        -- Executable by nobody until 0004 grants it (PUBLIC and Supabase's default
        -- privileges would allow everyone); see 0002.
        REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM PUBLIC;
        DO $$
        DECLARE
            supabase_role text;
        BEGIN
            FOR supabase_role IN
                SELECT rolname FROM pg_catalog.pg_roles
                WHERE rolname IN ('anon', 'authenticated', 'service_role')
                ORDER BY rolname
            LOOP
                EXECUTE pg_catalog.format(
                    'REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM %I', supabase_role
                );
            END LOOP;
        END
        $$;
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION public.get_available_waha_server(uuid, uuid[])")
