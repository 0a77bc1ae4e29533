"""allocate_waha_session and release_waha_session: race-free capacity accounting.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The seed allocates a session in three statements (pick a server with
get_available_waha_server, insert the session, sessions_ativas + 1). Two app
instances doing that at once both pick a server that has one free slot, and the
server ends above max_sessions. These two functions do the accounting in one call.

allocate_waha_session(user_uuid, session_name, excluded_server_ids):
- asks get_available_waha_server for the best server (so the order is that
  function's, by construction), then takes a slot with a guarded
  `UPDATE ... SET sessions_ativas = sessions_ativas + 1 WHERE ... sessions_ativas <
  max_sessions`. Under READ COMMITTED the UPDATE waits for a concurrent writer of
  the row and re-checks the guard against the committed row; when the slot is gone
  it updates nothing and the loop asks again with a fresh snapshot. A guard failure
  means the server was full in the latest committed state, so the next question
  does not return it: the loop ends when a slot is taken or nothing qualifies.
  (`SELECT ... LIMIT 1 FOR UPDATE` would instead return no row after waiting on a
  row that stopped qualifying, and fail while other servers have room.)
- inserts the session with status 'STARTING' on that server, in the same statement:
  a failure rolls the slot back.
- nothing has capacity: SQLSTATE WAH10, naming the user.
- the name already exists on the chosen server: SQLSTATE 23505 (unique_violation)
  with a message naming session and server. Names are unique per WAHA server, and
  the choice of server is the function's, so it does not try another server: a
  retry elsewhere would hide a name clash that the app should resolve (release and
  delete the old session, or pick another name).
- SECURITY INVOKER: row security applies, so a signed-in user only ever sees and
  takes slots on their own servers; another user's id finds no server (WAH10).

release_waha_session(session_id): marks an occupying session (status not STOPPED,
FAILED or DISCONNECTED, any case) STOPPED and gives its slot back, never below
zero, in one statement. The session's row is the guard: a second release (or a
concurrent one) finds it no longer occupying and frees nothing. A session that
occupies no slot is left as it is (a FAILED session stays FAILED). Returns whether
this call freed a slot; an unknown (or invisible) session is SQLSTATE WAH11.

EXECUTE for authenticated and service_role only; revoked from PUBLIC and anon
(Supabase's default privileges grant anon EXECUTE on new functions).
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ALLOCATE = "public.allocate_waha_session(uuid, text, uuid[])"
RELEASE = "public.release_waha_session(uuid)"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION public.allocate_waha_session(
            user_uuid uuid,
            session_name text,
            excluded_server_ids uuid[] DEFAULT '{}'
        )
            RETURNS public.waha_sessions
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            candidate uuid;
            taken uuid;
            created public.waha_sessions;
            active_servers integer;
        BEGIN
            LOOP
                SELECT best.id INTO candidate
                FROM public.get_available_waha_server(user_uuid, excluded_server_ids) AS best;
                IF candidate IS NULL THEN
                    SELECT pg_catalog.count(*) INTO active_servers
                    FROM public.waha_servers AS server
                    WHERE server.user_id = user_uuid AND server.ativo;
                    RAISE EXCEPTION 'no WAHA server of user % has a free session slot', user_uuid
                        USING ERRCODE = 'WAH10',
                              DETAIL = pg_catalog.format(
                                  '%s active server(s) visible to the caller, %s excluded by the caller; each is full (sessions_ativas >= max_sessions) or excluded.',
                                  active_servers, pg_catalog.cardinality(excluded_server_ids)),
                              HINT = 'Release sessions that ended (release_waha_session), raise max_sessions, '
                                     'activate or add a server; if counters drifted, run `waha-db sessions reconcile`.';
                END IF;

                UPDATE public.waha_servers AS server
                SET sessions_ativas = server.sessions_ativas + 1
                WHERE server.id = candidate
                  AND server.user_id = user_uuid
                  AND server.ativo
                  AND server.sessions_ativas < server.max_sessions
                RETURNING server.id INTO taken;
                EXIT WHEN taken IS NOT NULL;
                -- The slot went to a concurrent call (or the server was deactivated)
                -- between the choice and the update: choose again.
                candidate := NULL;
            END LOOP;

            INSERT INTO public.waha_sessions AS new_session (user_id, waha_server_id, session_name, status)
            VALUES (user_uuid, taken, allocate_waha_session.session_name, 'STARTING')
            ON CONFLICT ON CONSTRAINT waha_sessions_waha_server_id_session_name_key DO NOTHING
            RETURNING new_session.* INTO created;
            IF created.id IS NULL THEN
                RAISE EXCEPTION 'session % already exists on WAHA server % of user %',
                        allocate_waha_session.session_name, taken, user_uuid
                    USING ERRCODE = 'unique_violation',
                          CONSTRAINT = 'waha_sessions_waha_server_id_session_name_key',
                          HINT = 'Session names are unique per server: use another name, or release and delete the old session first.';
            END IF;
            RETURN created;
        END
        $$;
        COMMENT ON FUNCTION public.allocate_waha_session(uuid, text, uuid[]) IS
            'Creates a STARTING session on the server get_available_waha_server picks and takes one of its slots, race-free. SQLSTATE WAH10 when no server has a free slot; 23505 when the name exists on that server.';

        CREATE FUNCTION public.release_waha_session(session_id uuid)
            RETURNS boolean
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            freed_server uuid;
        BEGIN
            UPDATE public.waha_sessions AS session_row
            SET status = 'STOPPED'
            WHERE session_row.id = release_waha_session.session_id
              AND pg_catalog.upper(session_row.status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')
            RETURNING session_row.waha_server_id INTO freed_server;

            IF freed_server IS NULL THEN
                IF NOT EXISTS (SELECT FROM public.waha_sessions AS session_row
                               WHERE session_row.id = release_waha_session.session_id) THEN
                    RAISE EXCEPTION 'no WAHA session with id %', release_waha_session.session_id
                        USING ERRCODE = 'WAH11',
                              HINT = 'The session was deleted, or belongs to another user.';
                END IF;
                RETURN false;
            END IF;

            UPDATE public.waha_servers AS server
            SET sessions_ativas = GREATEST(server.sessions_ativas - 1, 0)
            WHERE server.id = freed_server;
            RETURN true;
        END
        $$;
        COMMENT ON FUNCTION public.release_waha_session(uuid) IS
            'Marks an occupying session STOPPED and gives its slot back (never below zero); true when this call freed a slot, false when the session occupied none. SQLSTATE WAH11 for an unknown session.';
        """
    )
    op.execute(
        f"""
        REVOKE ALL ON FUNCTION {ALLOCATE} FROM PUBLIC, authenticated, service_role;
        REVOKE ALL ON FUNCTION {RELEASE} FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION {ALLOCATE} TO authenticated, service_role;
        GRANT EXECUTE ON FUNCTION {RELEASE} TO authenticated, service_role;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON FUNCTION {ALLOCATE} FROM anon;
                REVOKE ALL ON FUNCTION {RELEASE} FROM anon;
            END IF;
        END
        $$;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP FUNCTION {RELEASE};
        DROP FUNCTION {ALLOCATE};
        """
    )
