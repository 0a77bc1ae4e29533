"""WAHA's session.status webhooks applied in one call; each server's WAHA worker id.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The seed gives each server a webhook_url and a webhook_secret, so the app receives
WAHA's `session.status` events; until now it had to write their effect by hand, and
the database was only as true as the last `sessions reconcile --live`. WAHA retries
a delivery that was not answered 2xx, so one event can arrive twice, and late,
after a newer one. WAHA 2025 and later give each event an `id` (`evt_` and a ULID)
and a `timestamp` (ms since the epoch); WAHA 2024.10.8 gives neither (recorded).

- public.record_waha_session_event(server_id, event) applies one `session.status`
  event to that server's session of that name (`event.session`, else
  `payload.name`): its status (`payload.status`), the phone number and profile
  name of `me` when WAHA says who is signed in (the digits of a phone's chat id,
  `pushName`; no `me` forgets nothing), and last_connected_at when the status is
  WORKING (the event's time, never later than now()). It returns what it did:
  - outcome 'applied': the session's row says what the event says;
  - 'inserted': the database did not know the session: as `sessions reconcile
    --live` does for an unknown_session, it is inserted for the server's user, with
    the event's status, phone number and profile name;
  - 'duplicate': the event was applied before (the same id as the last one
    applied to the session; or, without ids, the same timestamp): nothing changes;
  - 'late': an event newer than this one (by timestamp; at the same millisecond,
    by id, WAHA's ids being ULIDs) was applied already: nothing changes. So
    whatever the order of delivery, the row ends as the newest event says;
  - 'invalid_name': the name breaks the database's rule for session names
    (^[A-Za-z0-9_-]{1,54}$): left alone, nothing written, as the live reconcile
    leaves such a session (a delivery retried would change nothing either, so
    this is an answer, not an error: the handler answers WAHA 2xx and tells the
    operator to rename the session on the WAHA server).
  An event with neither id nor timestamp (WAHA before 2025) is applied as it comes.
  session_id and session_status say which row, and its status afterwards (NULL
  for 'invalid_name').
- Refusals: a server not visible to the caller is WAH20, as the report functions
  (0007, 0009); an event that is not a `session.status` event (not a JSON object,
  another `event`, no session name, no status or one longer than 50 characters,
  an id longer than 255, a timestamp that is not a number of milliseconds) is
  22023; an event that would make the session occupy a slot while its user already
  occupies that name on another server (a name identifies one session of its user,
  revision 0010) is WAH21, nothing changed: stop it on one of the two WAHA
  servers (or release the other row), and the next event or delivery applies.
- sessions_ativas stays exact: a status change across the occupying rule (a
  status other than STOPPED, FAILED or DISCONNECTED, any case; PASSKEY_REQUIRED
  and PASSKEY_CONFIRMATION_REQUIRED of WAHA 2026.7.1 occupy) takes or gives back
  the server's slot in the same transaction, never below zero; an inserted
  occupying session takes one. The count may go above max_sessions: WAHA runs the
  session, and the live reconcile reports over_capacity.
- Locks, as release_waha_session and the live reconcile take them: the session's
  row first (FOR UPDATE, waited for as the caller's lock_timeout allows; every
  event of that session waits there, so its checks and writes see the last one),
  then, only when a slot is taken or given back, the server's row.
  allocate_waha_session takes them the other way round (the server's row, then the
  stopped row of the name it reuses, or the name's unique index), so once it holds
  the session's row the function waits for nothing (the server's row, a name's
  unique index, a foreign key) longer than a short lock_timeout: 50 ms, and below
  deadlock_timeout. When that runs out it lets go of everything it took (a
  subtransaction), pauses a few milliseconds and starts again, up to 40 times,
  then stops with 55P03 (another transaction keeps the server's row, or a session
  of that name, locked: deliver again); the caller's lock_timeout is given back. So no call of
  allocate_waha_session or release_waha_session fails with a deadlock because of
  it. (Waiting briefly for the server's row alone was not enough: under stress an
  allocation still deadlocked with an event that held the session's row while it
  waited for a name's unique index.)
- Bounded: the last event applied to each session (its id and timestamp) is the
  whole memory, in public.waha_session_last_event, one row per session, keyed by
  (server_id, session_name) with a foreign key to the session (ON UPDATE and ON
  DELETE CASCADE: it follows the session, and goes with it) and one to the server
  of its user_id (as waha_server_health's). Row security and grants as
  waha_server_health's: authenticated reads and writes its own rows, no DELETE.
- SECURITY INVOKER, search_path = '', every object schema-qualified; EXECUTE for
  authenticated and service_role only: the server's user through row security
  (another user's server is WAH20), service_role on any server.

The live reconcile needs each server's WAHA worker: servers sharing one session
store (WAHA_WORKER_ID per worker) list each other's sessions, each naming its
`assignedWorker`; a server says who it is in GET /api/server/status as `worker.id`.

- public.waha_server_health.waha_worker_id, at the end: the worker id the server
  last reported; NULL when it reported none (an empty id, no worker, or a 404) or
  was never asked. waha_servers keeps its columns (the seed inserts into it
  positionally, get_available_waha_server returns its row type).
- public.report_waha_server_worker(server_id, worker_id): records it, in the way of
  report_waha_server_version (SECURITY INVOKER, WAH20 for a server that is not
  visible, the value trimmed and cut to 100 characters, blank means none); the
  health counters and the version are left alone.

The downgrade drops the two functions, the table and the column (and their values).
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

EVENT = "public.record_waha_session_event(uuid, jsonb)"
WORKER = "public.report_waha_server_worker(uuid, text)"

# Plain SQL; a colon is never followed by a letter or a digit (Alembic's text() would take
# it for a parameter), hence the [:] of the phone pattern.
UPGRADE_SQL = r"""
ALTER TABLE public.waha_server_health
    ADD COLUMN waha_worker_id text;
COMMENT ON COLUMN public.waha_server_health.waha_worker_id IS
    'The WAHA worker id the server last reported at GET /api/server/status (worker.id); NULL when it reported none (empty, absent, a 404) or was never asked.';

CREATE FUNCTION public.report_waha_server_worker(server_id uuid, worker_id text)
    RETURNS public.waha_server_health
    LANGUAGE plpgsql
    VOLATILE
    SECURITY INVOKER
    SET search_path = ''
AS $function$
DECLARE
    owner_id uuid;
    reported_worker text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_worker.worker_id), ''), 100);
    recorded public.waha_server_health;
BEGIN
    SELECT server.user_id INTO owner_id
    FROM public.waha_servers AS server
    WHERE server.id = report_waha_server_worker.server_id;
    IF owner_id IS NULL THEN
        RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_worker.server_id
            USING ERRCODE = 'WAH20',
                  HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
    END IF;

    INSERT INTO public.waha_server_health AS health (server_id, user_id, waha_worker_id)
    VALUES (report_waha_server_worker.server_id, owner_id, reported_worker)
    ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
    SET waha_worker_id = excluded.waha_worker_id
    RETURNING health.* INTO recorded;
    RETURN recorded;
END
$function$;
COMMENT ON FUNCTION public.report_waha_server_worker(uuid, text) IS
    'Records the WAHA worker id a server reported at GET /api/server/status (blank or NULL: none); the health counters are left alone. Row security applies; SQLSTATE WAH20 for a server that is not visible.';

CREATE TABLE public.waha_session_last_event (
    server_id uuid NOT NULL,
    session_name varchar(255) NOT NULL,
    user_id uuid NOT NULL,
    event_id text,
    event_timestamp bigint,
    applied_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT waha_session_last_event_pkey PRIMARY KEY (server_id, session_name),
    CONSTRAINT waha_session_last_event_server_id_session_name_fkey
        FOREIGN KEY (server_id, session_name)
        REFERENCES public.waha_sessions (waha_server_id, session_name)
        ON UPDATE CASCADE ON DELETE CASCADE,
    -- The row's user is its server's (what row security matches), as in waha_server_health.
    CONSTRAINT waha_session_last_event_user_id_server_id_fkey
        FOREIGN KEY (user_id, server_id)
        REFERENCES public.waha_servers (user_id, id)
        ON UPDATE CASCADE ON DELETE CASCADE,
    CONSTRAINT waha_session_last_event_event_id_length_check
        CHECK (pg_catalog.length(event_id) BETWEEN 1 AND 255),
    CONSTRAINT waha_session_last_event_event_timestamp_not_negative_check
        CHECK (event_timestamp >= 0),
    CONSTRAINT waha_session_last_event_id_or_timestamp_check
        CHECK (event_id IS NOT NULL OR event_timestamp IS NOT NULL)
);
COMMENT ON TABLE public.waha_session_last_event IS
    'The last WAHA session.status event record_waha_session_event applied to each session (id, timestamp): what tells a duplicate or a late delivery. One row per session, deleted with it.';
COMMENT ON COLUMN public.waha_session_last_event.event_id IS
    'The event''s id (evt_ and a ULID, WAHA 2025 and later); NULL when the events had none.';
COMMENT ON COLUMN public.waha_session_last_event.event_timestamp IS
    'The event''s timestamp, milliseconds since the epoch as WAHA writes it; NULL when the events had none.';
-- Covers the foreign key to the server (and a user's own listing under row security); the
-- primary key covers the one to the session.
CREATE INDEX waha_session_last_event_user_id_server_id_idx
    ON public.waha_session_last_event (user_id, server_id);

ALTER TABLE public.waha_session_last_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY waha_session_last_event_select_own ON public.waha_session_last_event
    FOR SELECT TO authenticated
    USING (user_id = (SELECT public.waha_request_user_id()));
CREATE POLICY waha_session_last_event_insert_own ON public.waha_session_last_event
    FOR INSERT TO authenticated
    WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
CREATE POLICY waha_session_last_event_update_own ON public.waha_session_last_event
    FOR UPDATE TO authenticated
    USING (user_id = (SELECT public.waha_request_user_id()))
    WITH CHECK (user_id = (SELECT public.waha_request_user_id()));

CREATE FUNCTION public.record_waha_session_event(
    server_id uuid,
    event jsonb,
    OUT outcome text,
    OUT session_id uuid,
    OUT session_status text
)
    RETURNS record
    LANGUAGE plpgsql
    VOLATILE
    SECURITY INVOKER
    SET search_path = ''
AS $function$
DECLARE
    owner_id uuid;
    event_session text;
    event_status text;
    incoming_id text;
    incoming_timestamp bigint;
    incoming_time timestamptz := pg_catalog.now();
    me jsonb;
    phone text;
    profile text;
    current_row public.waha_sessions;
    last_event public.waha_session_last_event;
    slot_change integer;
    brief_wait text;
    caller_lock_timeout text := pg_catalog.current_setting('lock_timeout');
    briefly boolean := false;
    failed_constraint text;
    other_server uuid;
BEGIN
    -- What the event says, or 22023 for what is not a session.status event.
    IF event IS NULL OR pg_catalog.jsonb_typeof(event) IS DISTINCT FROM 'object'
       OR event -> 'event' IS DISTINCT FROM '"session.status"'::jsonb THEN
        RAISE EXCEPTION 'not a WAHA session.status event: % ...', pg_catalog.left(event::text, 200)
            USING ERRCODE = '22023',
                  HINT = 'Pass the webhook''s JSON body as WAHA sent it, for events of type session.status only.';
    END IF;
    event_session := CASE WHEN pg_catalog.jsonb_typeof(event -> 'session') = 'string' THEN event ->> 'session'
                          WHEN pg_catalog.jsonb_typeof(event -> 'payload' -> 'name') = 'string' THEN event -> 'payload' ->> 'name'
                     END;
    event_status := CASE WHEN pg_catalog.jsonb_typeof(event -> 'payload' -> 'status') = 'string'
                         THEN NULLIF(pg_catalog.btrim(event -> 'payload' ->> 'status'), '') END;
    IF event_session IS NULL OR event_status IS NULL OR pg_catalog.length(event_status) > 50 THEN
        RAISE EXCEPTION 'the session.status event has no session name or no status (or one longer than 50 characters)'
            USING ERRCODE = '22023',
                  HINT = 'WAHA names the session in "session" and gives its status in "payload"."status".';
    END IF;
    IF pg_catalog.jsonb_typeof(event -> 'id') = 'string' THEN
        incoming_id := NULLIF(event ->> 'id', '');
        IF pg_catalog.length(incoming_id) > 255 THEN
            RAISE EXCEPTION 'the event id is longer than 255 characters' USING ERRCODE = '22023';
        END IF;
    ELSIF event -> 'id' IS NOT NULL AND event -> 'id' <> 'null'::jsonb THEN
        RAISE EXCEPTION 'the event id is not a string: %', event -> 'id' USING ERRCODE = '22023';
    END IF;
    IF event -> 'timestamp' IS NOT NULL AND event -> 'timestamp' <> 'null'::jsonb THEN
        IF pg_catalog.jsonb_typeof(event -> 'timestamp') <> 'number'
           OR (event ->> 'timestamp')::numeric NOT BETWEEN 0 AND 9007199254740991 THEN
            RAISE EXCEPTION 'the event timestamp is not a number of milliseconds since the epoch: %', event -> 'timestamp'
                USING ERRCODE = '22023';
        END IF;
        incoming_timestamp := pg_catalog.floor((event ->> 'timestamp')::numeric)::bigint;
        incoming_time := LEAST(pg_catalog.to_timestamp(incoming_timestamp / 1000.0), pg_catalog.now());
    END IF;
    me := CASE WHEN pg_catalog.jsonb_typeof(event -> 'me') = 'object' THEN event -> 'me' END;
    IF pg_catalog.jsonb_typeof(me -> 'id') = 'string' THEN
        -- The digits of a phone's chat id (NOWEB adds a device, 5511...[:]12@s.whatsapp.net); a @lid is no phone number.
        phone := pg_catalog.substring(me ->> 'id', '^([0-9]{1,20})([:][0-9]+)?@(c\.us|s\.whatsapp\.net)$');
    END IF;
    IF pg_catalog.jsonb_typeof(me -> 'pushName') = 'string' THEN
        profile := pg_catalog.left(NULLIF(pg_catalog.btrim(me ->> 'pushName'), ''), 255);
    END IF;

    SELECT server.user_id INTO owner_id
    FROM public.waha_servers AS server
    WHERE server.id = record_waha_session_event.server_id;
    IF owner_id IS NULL THEN
        RAISE EXCEPTION 'no WAHA server with id %', record_waha_session_event.server_id
            USING ERRCODE = 'WAH20',
                  HINT = 'The server was deleted, or belongs to another user: record only events of your own servers.';
    END IF;
    IF event_session !~ '^[A-Za-z0-9_-]{1,54}$' THEN
        outcome := 'invalid_name';
        RETURN;
    END IF;

    -- Once the session's row is held, every wait is short, and shorter than deadlock_timeout.
    brief_wait := LEAST(50, pg_catalog.floor(EXTRACT(epoch FROM pg_catalog.current_setting('deadlock_timeout')::interval) * 500))::integer || 'ms';

    FOR attempt IN 1..40 LOOP
        BEGIN
            current_row := NULL;
            last_event := NULL;
            slot_change := 0;
            -- The session's row, waited for as long as the caller's lock_timeout allows: nothing is held yet.
            SELECT session_row.* INTO current_row
            FROM public.waha_sessions AS session_row
            WHERE session_row.waha_server_id = record_waha_session_event.server_id
              AND session_row.session_name = event_session
            FOR UPDATE;

            IF current_row.id IS NOT NULL THEN
                SELECT recorded.* INTO last_event
                FROM public.waha_session_last_event AS recorded
                WHERE recorded.server_id = record_waha_session_event.server_id
                  AND recorded.session_name = event_session;
                IF incoming_id IS NOT NULL AND incoming_id = last_event.event_id THEN
                    outcome := 'duplicate';
                ELSIF incoming_timestamp < last_event.event_timestamp THEN
                    outcome := 'late';
                ELSIF incoming_timestamp = last_event.event_timestamp THEN
                    -- The same millisecond: the greater id is the later event (ULIDs), without ids the same event.
                    outcome := CASE WHEN incoming_id IS NULL OR last_event.event_id IS NULL THEN 'duplicate'
                                    WHEN incoming_id COLLATE "C" < last_event.event_id COLLATE "C" THEN 'late' END;
                END IF;
                IF outcome IS NOT NULL THEN
                    session_id := current_row.id;
                    session_status := current_row.status;
                    RETURN;
                END IF;
            END IF;

            -- From here on this call holds the session's row (or inserts it): it waits briefly for anything
            -- else (the server's row, a name's unique index, a foreign key), else lets go of all and starts
            -- again, so an allocation holding the server's row and waiting for this one goes through.
            briefly := true;
            PERFORM pg_catalog.set_config('lock_timeout', brief_wait, true);
            IF current_row.id IS NULL THEN
                -- Unknown to the database: inserted for the server's user, as the live reconcile does.
                INSERT INTO public.waha_sessions AS new_session
                    (user_id, waha_server_id, session_name, status, phone_number, profile_name, last_connected_at)
                VALUES (owner_id, record_waha_session_event.server_id, event_session, event_status,
                        phone, profile, CASE WHEN event_status = 'WORKING' THEN incoming_time END)
                ON CONFLICT ON CONSTRAINT waha_sessions_waha_server_id_session_name_key DO NOTHING
                RETURNING new_session.* INTO current_row;
                IF current_row.id IS NULL THEN
                    -- Inserted by a concurrent call since the look-up: apply to that row on the next turn.
                    PERFORM pg_catalog.set_config('lock_timeout', caller_lock_timeout, true);
                    briefly := false;
                    CONTINUE;
                END IF;
                outcome := 'inserted';
                slot_change := (pg_catalog.upper(event_status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED'))::integer;
            ELSE
                outcome := 'applied';
                slot_change := (pg_catalog.upper(event_status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED'))::integer
                             - (pg_catalog.upper(current_row.status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED'))::integer;
                UPDATE public.waha_sessions AS session_row
                SET status = event_status,
                    phone_number = COALESCE(phone, session_row.phone_number),
                    profile_name = COALESCE(profile, session_row.profile_name),
                    last_connected_at = CASE WHEN event_status = 'WORKING'
                                             THEN GREATEST(session_row.last_connected_at, incoming_time)
                                             ELSE session_row.last_connected_at END
                WHERE session_row.id = current_row.id
                RETURNING session_row.* INTO current_row;
            END IF;

            IF slot_change <> 0 THEN
                -- The server's row after the session's, as release_waha_session takes them.
                UPDATE public.waha_servers AS server
                SET sessions_ativas = GREATEST(server.sessions_ativas + slot_change, 0)
                WHERE server.id = record_waha_session_event.server_id;
            END IF;

            IF incoming_id IS NOT NULL OR incoming_timestamp IS NOT NULL THEN
                INSERT INTO public.waha_session_last_event AS recorded
                    (server_id, session_name, user_id, event_id, event_timestamp, applied_at)
                VALUES (record_waha_session_event.server_id, event_session, owner_id,
                        incoming_id, incoming_timestamp, pg_catalog.now())
                ON CONFLICT ON CONSTRAINT waha_session_last_event_pkey DO UPDATE
                SET event_id = COALESCE(excluded.event_id, recorded.event_id),
                    event_timestamp = COALESCE(excluded.event_timestamp, recorded.event_timestamp),
                    applied_at = excluded.applied_at;
            END IF;
            PERFORM pg_catalog.set_config('lock_timeout', caller_lock_timeout, true);

            session_id := current_row.id;
            session_status := current_row.status;
            RETURN;
        EXCEPTION
            WHEN lock_not_available OR deadlock_detected THEN
                -- Everything this turn took is let go, and lock_timeout is the caller's again. A brief wait
                -- that ran out: try again after a pause; the caller's own lock_timeout stands.
                IF NOT briefly AND SQLSTATE = '55P03' THEN
                    RAISE;
                END IF;
                briefly := false;
                outcome := NULL;
                PERFORM pg_catalog.pg_sleep(pg_catalog.random() * 0.005 * LEAST(attempt, 10));
            WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS failed_constraint = CONSTRAINT_NAME;
                IF failed_constraint IS DISTINCT FROM 'waha_sessions_user_id_session_name_occupying_key' THEN
                    RAISE;
                END IF;
                SELECT session_row.waha_server_id INTO other_server
                FROM public.waha_sessions AS session_row
                WHERE session_row.user_id = owner_id
                  AND session_row.session_name = event_session
                  AND pg_catalog.upper(session_row.status::text) <> ALL (ARRAY['STOPPED', 'FAILED', 'DISCONNECTED']);
                RAISE EXCEPTION 'WAHA server % reports session % as %, but its user already occupies that name on WAHA server %',
                        record_waha_session_event.server_id, event_session, event_status,
                        COALESCE(other_server::text, '(another)')
                    USING ERRCODE = 'WAH21',
                          DETAIL = 'A session name identifies one session of its user among those occupying a slot; nothing was changed.',
                          HINT = 'Stop the session on one of the two WAHA servers (or release_waha_session the other row): the next event, '
                                 'or WAHA''s next delivery of this one, then applies.';
        END;
    END LOOP;
    RAISE EXCEPTION 'WAHA server %, session %: a row the event needs (the server''s, or another session of that name) stayed locked by another transaction; nothing was changed',
            record_waha_session_event.server_id, event_session
        USING ERRCODE = 'lock_not_available',
              HINT = 'Answer WAHA with an error so that it delivers the event again.';
END
$function$;
COMMENT ON FUNCTION public.record_waha_session_event(uuid, jsonb) IS
    'Applies a WAHA session.status webhook event to that server''s session of that name (status, phone and profile from me, last_connected_at when WORKING), keeping sessions_ativas exact; outcome applied, inserted (unknown session), duplicate, late (nothing changed) or invalid_name (left alone). Row security applies; SQLSTATE WAH20 for a server that is not visible, 22023 for what is not a session.status event, WAH21 when the name occupies a slot on another server of its user.';

REVOKE ALL ON TABLE public.waha_session_last_event FROM PUBLIC, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE ON TABLE public.waha_session_last_event TO authenticated;
GRANT ALL ON TABLE public.waha_session_last_event TO service_role;
REVOKE ALL ON FUNCTION public.record_waha_session_event(uuid, jsonb) FROM PUBLIC, authenticated, service_role;
REVOKE ALL ON FUNCTION public.report_waha_server_worker(uuid, text) FROM PUBLIC, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.record_waha_session_event(uuid, jsonb) TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.report_waha_server_worker(uuid, text) TO authenticated, service_role;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON TABLE public.waha_session_last_event FROM anon;
        REVOKE ALL ON FUNCTION public.record_waha_session_event(uuid, jsonb) FROM anon;
        REVOKE ALL ON FUNCTION public.report_waha_server_worker(uuid, text) FROM anon;
    END IF;
END
$$;
"""

DOWNGRADE_SQL = r"""
DROP FUNCTION public.record_waha_session_event(uuid, jsonb);
DROP TABLE public.waha_session_last_event;
DROP FUNCTION public.report_waha_server_worker(uuid, text);
ALTER TABLE public.waha_server_health DROP COLUMN waha_worker_id;
"""


def upgrade() -> None:
    op.execute(UPGRADE_SQL)


def downgrade() -> None:
    op.execute(DOWNGRADE_SQL)
