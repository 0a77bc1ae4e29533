-- waha-db: record_waha_session_event applies WAHA's session.status webhooks to the sessions,
-- once each, in WAHA's order, keeping sessions_ativas exact.
--
-- Written by `waha-db export supabase`, which brings this file to each release's tests: keep
-- your own tests in other files. pgTAP, for `supabase test db` (pgTAP in schema extensions, on
-- Supabase's search_path) or `pg_prove -d "$DATABASE_URL" supabase/tests/waha_*.sql`.
-- Runs in a transaction that is rolled back: changes nothing.
BEGIN;
SELECT plan(10);

DO $$
BEGIN
    IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
        INSERT INTO auth.users (id, email) VALUES
            ('0c0c0c0c-0000-4000-8000-000000000007', 'carla@waha-db.test'),
            ('0d0d0d0d-0000-4000-8000-000000000008', 'davi@waha-db.test');
    END IF;
END
$$;
INSERT INTO public.waha_servers (id, user_id, nome, api_url, max_sessions) VALUES
    ('0c0c0c0c-0000-4000-8000-0000000000c1', '0c0c0c0c-0000-4000-8000-000000000007', 'Carla', 'https://carla.waha.example', 5),
    ('0d0d0d0d-0000-4000-8000-0000000000d1', '0d0d0d0d-0000-4000-8000-000000000008', 'Davi', 'https://davi.waha.example', 5);

-- Carla, signed in the Supabase way, as her webhook handler calls the function for her server.
SET LOCAL ROLE authenticated;
SELECT pg_catalog.set_config('request.jwt.claims', '{"sub": "0c0c0c0c-0000-4000-8000-000000000007", "role": "authenticated"}', true);
SELECT public.allocate_waha_session('0c0c0c0c-0000-4000-8000-000000000007', 'loja-01');

SELECT results_eq(
    $$SELECT outcome, session_status FROM public.record_waha_session_event('0c0c0c0c-0000-4000-8000-0000000000c1',
        '{"id": "evt_01kc5qz3w8000000000000000b", "timestamp": 1765000002000, "event": "session.status",
          "session": "loja-01", "me": {"id": "5511999990001@c.us", "pushName": "Loja 1"},
          "payload": {"name": "loja-01", "status": "WORKING"}}')$$,
    $$VALUES ('applied', 'WORKING')$$,
    'a WORKING event is applied');
SELECT results_eq($$SELECT phone_number::text, profile_name::text, last_connected_at IS NOT NULL FROM public.waha_sessions$$,
                  $$VALUES ('5511999990001', 'Loja 1', true)$$, 'with the phone and profile of me, and last_connected_at');
SELECT results_eq(
    $$SELECT outcome FROM public.record_waha_session_event('0c0c0c0c-0000-4000-8000-0000000000c1',
        '{"id": "evt_01kc5qz3w8000000000000000b", "timestamp": 1765000002000, "event": "session.status",
          "session": "loja-01", "payload": {"name": "loja-01", "status": "WORKING"}}')$$,
    $$VALUES ('duplicate')$$,
    'the same event delivered again is a duplicate');
SELECT results_eq(
    $$SELECT outcome, session_status FROM public.record_waha_session_event('0c0c0c0c-0000-4000-8000-0000000000c1',
        '{"id": "evt_01kc5qz3w8000000000000000a", "timestamp": 1765000001000, "event": "session.status",
          "session": "loja-01", "payload": {"name": "loja-01", "status": "STOPPED"}}')$$,
    $$VALUES ('late', 'WORKING')$$,
    'an older event delivered late changes nothing');
SELECT results_eq(
    $$SELECT outcome FROM public.record_waha_session_event('0c0c0c0c-0000-4000-8000-0000000000c1',
        '{"event": "session.status", "session": "painel", "payload": {"name": "painel", "status": "PASSKEY_REQUIRED"}}')$$,
    $$VALUES ('inserted')$$,
    'an unknown session is inserted for the server''s user');
SELECT results_eq($$SELECT sessions_ativas FROM public.waha_servers$$, $$VALUES (2)$$,
                  'loja-01 and the PASSKEY_REQUIRED session occupy a slot each');
SELECT results_eq(
    $$SELECT outcome FROM public.record_waha_session_event('0c0c0c0c-0000-4000-8000-0000000000c1',
        '{"event": "session.status", "session": "nome inválido!", "payload": {"status": "WORKING"}}')$$,
    $$VALUES ('invalid_name')$$,
    'a name outside WAHA''s rule is left alone');
SELECT results_eq(
    $$SELECT outcome FROM public.record_waha_session_event('0c0c0c0c-0000-4000-8000-0000000000c1',
        '{"event": "session.status", "session": "loja-01", "payload": {"name": "loja-01", "status": "STOPPED"}}')$$,
    $$VALUES ('applied')$$,
    'an event without id or timestamp (WAHA before 2025) is applied as it comes');
SELECT results_eq($$SELECT sessions_ativas FROM public.waha_servers$$, $$VALUES (1)$$,
                  'stopping gave loja-01''s slot back');
SELECT throws_ok(
    $$SELECT public.record_waha_session_event('0d0d0d0d-0000-4000-8000-0000000000d1',
        '{"event": "session.status", "session": "intrusa", "payload": {"status": "WORKING"}}')$$,
    'WAH20', NULL, 'Carla cannot record events of Davi''s server');

SELECT * FROM finish();
ROLLBACK;
