"""Session names per user, one URL per WAHA server, and allocation by name that is idempotent.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

WAHA addresses a session by its name on a server, and the app addresses it by its
name for its user: so a session name identifies a session for its user. Before this
revision a user could hold two occupying sessions named c1_1 on two servers, which
the app cannot tell apart, and allocate_waha_session(user, 'c1_1') failed with
"already exists" when the server it picked held a STOPPED (released) row of that
name while a slot was free.

- A user's occupying sessions (status not STOPPED, FAILED or DISCONNECTED, any case)
  have distinct names: a partial UNIQUE index on (user_id, session_name). Names are
  compared exactly, as WAHA does. Stopped rows of the same name may stay on several
  servers (history, and WAHA keeps a stopped session's login on its server).
- allocate_waha_session(user_uuid, session_name, excluded_server_ids):
  - when the user already has an occupying session of that name, returns it and takes
    no slot: calling twice returns the same session; when that session sits on a
    server the call excludes, SQLSTATE WAH12 (release it first: allocation does not
    stop a session that may be working);
  - otherwise picks the server as before (get_available_waha_server's choice, the
    guarded UPDATE of the counter and its retry loop), then on that server reuses
    the user's STOPPED/FAILED/DISCONNECTED row of that name (status STARTING, the QR
    code cleared; the phone and profile stay, they are the WhatsApp account of that
    session) or creates the session;
  - race-free: a concurrent call that gives the name to a session first makes this
    call's insert (or reuse) conflict; it gives its slot back and returns that
    session. No server exceeds max_sessions, and no call fails while an eligible
    server has a free slot.
- One URL per WAHA server for a user: http://h:1/ and http://h:1 (or HTTPS://H:1,
  or https://h:443) are the same server, yet both passed UNIQUE (user_id, api_url).
  public.waha_normalized_url(url) (scheme and host in lower case, the default port
  and trailing slashes dropped) keys a UNIQUE index (user_id, normalized URL); the
  stored URL stays as written. The UNIQUE constraint of the seed stays too.
- Data that breaks either rule stops the upgrade before anything changes, listing
  every duplicate and what to do: WAH08 (one server under two URLs, or one name
  occupying twice).

The downgrade restores allocate_waha_session as revision 0006 defined it.
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NORMALIZED_URL = "public.waha_normalized_url(text)"

UPGRADE_SQL = r"""
CREATE FUNCTION public.waha_normalized_url(url text)
    RETURNS text
    LANGUAGE sql
    IMMUTABLE
    SECURITY INVOKER
    SET search_path = ''
AS $function$
    -- [:] rather than a bare colon before the port: Alembic's text() would read a colon and digits as a parameter.
    SELECT pg_catalog.lower(pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(
               url,
               '^(http://[^/?#]*?)[:]80(?=[/?#]|$)', '\1', 'i'),
               '^(https://[^/?#]*?)[:]443(?=[/?#]|$)', '\1', 'i'),
               '/+$', ''))
$function$;
COMMENT ON FUNCTION public.waha_normalized_url(text) IS
    'A WAHA server URL as compared for uniqueness: lower case, without the default port or trailing slashes.';
REVOKE ALL ON FUNCTION public.waha_normalized_url(text) FROM PUBLIC, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.waha_normalized_url(text) TO authenticated, service_role;

DO $$
DECLARE
    duplicates text[];
BEGIN
    SELECT pg_catalog.array_agg(pg_catalog.format('user %s: %s', duplicate.user_id, duplicate.servers) ORDER BY duplicate.user_id::text)
    INTO duplicates
    FROM (
        SELECT server.user_id,
               pg_catalog.string_agg(pg_catalog.format('server %s (%L)', server.id, server.api_url), ' and ' ORDER BY server.api_url) AS servers
        FROM public.waha_servers AS server
        GROUP BY server.user_id, public.waha_normalized_url(server.api_url)
        HAVING pg_catalog.count(*) > 1
    ) AS duplicate;
    IF duplicates IS NOT NULL THEN
        RAISE EXCEPTION 'waha_servers holds the same WAHA server twice for a user, under URLs written differently:%', E'\n  - ' || pg_catalog.array_to_string(duplicates, E'\n  - ')
            USING ERRCODE = 'WAH08',
                  HINT = 'Keep one server per URL: move the sessions of the other (UPDATE public.waha_sessions SET waha_server_id = ... WHERE waha_server_id = ...), '
                         'then delete it (waha-db servers remove ID), and run the upgrade again.';
    END IF;

    SELECT pg_catalog.array_agg(pg_catalog.format('user %s, session %s: %s', duplicate.user_id, duplicate.session_name, duplicate.sessions) ORDER BY duplicate.user_id::text, duplicate.session_name)
    INTO duplicates
    FROM (
        SELECT session_row.user_id, session_row.session_name,
               pg_catalog.string_agg(pg_catalog.format('%s on server %s (%s)', session_row.id, session_row.waha_server_id, session_row.status), ', ' ORDER BY session_row.id) AS sessions
        FROM public.waha_sessions AS session_row
        WHERE pg_catalog.upper(session_row.status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')
        GROUP BY session_row.user_id, session_row.session_name
        HAVING pg_catalog.count(*) > 1
    ) AS duplicate;
    IF duplicates IS NOT NULL THEN
        RAISE EXCEPTION 'a user holds two occupying sessions of the same name, which the app cannot tell apart:%', E'\n  - ' || pg_catalog.array_to_string(duplicates, E'\n  - ')
            USING ERRCODE = 'WAH08',
                  HINT = 'Stop all but the one that runs: SELECT public.release_waha_session(''SESSION_ID''); (it frees its slot), then run the upgrade again.';
    END IF;
END
$$;


CREATE UNIQUE INDEX waha_servers_user_id_normalized_api_url_key
    ON public.waha_servers (user_id, public.waha_normalized_url(api_url));
CREATE UNIQUE INDEX waha_sessions_user_id_session_name_occupying_key
    ON public.waha_sessions (user_id, session_name)
    WHERE pg_catalog.upper(status::text) <> ALL (ARRAY['STOPPED', 'FAILED', 'DISCONNECTED']);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON FUNCTION public.waha_normalized_url(text) FROM anon;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION public.allocate_waha_session(
    user_uuid uuid,
    session_name text,
    excluded_server_ids uuid[] DEFAULT '{}'
)
    RETURNS public.waha_sessions
    LANGUAGE plpgsql
    VOLATILE
    SECURITY INVOKER
    SET search_path = ''
AS $function$
DECLARE
    candidate uuid;
    taken uuid;
    created public.waha_sessions;
    active_servers integer;
BEGIN
    LOOP
        -- The user's session of that name that occupies a slot, wherever it runs, is the answer.
        SELECT session_row.* INTO created
        FROM public.waha_sessions AS session_row
        WHERE session_row.user_id = user_uuid
          AND session_row.session_name = allocate_waha_session.session_name
          AND pg_catalog.upper(session_row.status::text) <> ALL (ARRAY['STOPPED', 'FAILED', 'DISCONNECTED']);
        IF created.id IS NOT NULL THEN
            IF created.waha_server_id = ANY (excluded_server_ids) THEN
                RAISE EXCEPTION 'session % of user % occupies a slot on WAHA server %, which this call excludes',
                        allocate_waha_session.session_name, user_uuid, created.waha_server_id
                    USING ERRCODE = 'WAH12',
                          HINT = 'A session name identifies one session of its user: release it first '
                                 '(release_waha_session), then allocate it again to start it on another server.';
            END IF;
            EXIT;
        END IF;

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

        -- On that server, the user's stopped session of that name starts again; else a new one.
        BEGIN
            UPDATE public.waha_sessions AS session_row
            SET status = 'STARTING', qr_code = NULL
            WHERE session_row.waha_server_id = taken
              AND session_row.user_id = user_uuid
              AND session_row.session_name = allocate_waha_session.session_name
              AND pg_catalog.upper(session_row.status::text) = ANY (ARRAY['STOPPED', 'FAILED', 'DISCONNECTED'])
            RETURNING session_row.* INTO created;
            IF created.id IS NULL THEN
                INSERT INTO public.waha_sessions AS new_session (user_id, waha_server_id, session_name, status)
                VALUES (user_uuid, taken, allocate_waha_session.session_name, 'STARTING')
                ON CONFLICT DO NOTHING
                RETURNING new_session.* INTO created;
            END IF;
        EXCEPTION WHEN unique_violation THEN
            created := NULL;
        END;
        EXIT WHEN created.id IS NOT NULL;
        -- A concurrent call gave that name to a session of this user first: give the
        -- slot back, and answer with that session on the next turn.
        UPDATE public.waha_servers AS server
        SET sessions_ativas = GREATEST(server.sessions_ativas - 1, 0)
        WHERE server.id = taken;
        taken := NULL;
    END LOOP;
    RETURN created;
END
$function$;
COMMENT ON FUNCTION public.allocate_waha_session(uuid, text, uuid[]) IS
    'The user''s session of that name: the occupying one when there is one (no slot taken; SQLSTATE WAH12 when it sits on an excluded server), else started on the server get_available_waha_server picks, reusing a stopped row of that name there, taking one slot, race-free. SQLSTATE WAH10 when no server has a free slot.';
"""

DOWNGRADE_SQL = r"""
DROP INDEX public.waha_sessions_user_id_session_name_occupying_key;
DROP INDEX public.waha_servers_user_id_normalized_api_url_key;
DROP FUNCTION public.waha_normalized_url(text);

        CREATE OR REPLACE FUNCTION public.allocate_waha_session(
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

"""


def upgrade() -> None:
    op.execute(UPGRADE_SQL)


def downgrade() -> None:
    op.execute(DOWNGRADE_SQL)
