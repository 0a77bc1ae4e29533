-- waha-db: allocate_waha_session takes a slot on the best server and creates the session in one
-- call; release_waha_session gives the slot back once.
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
            ('0f0f0f0f-0000-4000-8000-000000000005', 'elisa@waha-db.test'),
            ('0e0e0e0e-0000-4000-8000-000000000006', 'fabio@waha-db.test');
    END IF;
END
$$;
INSERT INTO public.waha_servers (id, user_id, nome, api_url, prioridade, max_sessions) VALUES
    ('0f0f0f0f-0000-4000-8000-0000000000f1', '0f0f0f0f-0000-4000-8000-000000000005', 'Principal', 'https://elisa-1.waha.example', 10, 1),
    ('0f0f0f0f-0000-4000-8000-0000000000f2', '0f0f0f0f-0000-4000-8000-000000000005', 'Backup', 'https://elisa-2.waha.example', 5, 1),
    ('0e0e0e0e-0000-4000-8000-0000000000e1', '0e0e0e0e-0000-4000-8000-000000000006', 'Fabio', 'https://fabio.waha.example', 10, 5);

-- Elisa, signed in the Supabase way, allocates from the app.
SET LOCAL ROLE authenticated;
SELECT pg_catalog.set_config('request.jwt.claims', '{"sub": "0f0f0f0f-0000-4000-8000-000000000005", "role": "authenticated"}', true);

SELECT results_eq(
    $$SELECT waha_server_id, status::text FROM public.allocate_waha_session('0f0f0f0f-0000-4000-8000-000000000005', 'cliente-001')$$,
    $$VALUES ('0f0f0f0f-0000-4000-8000-0000000000f1'::uuid, 'STARTING')$$,
    'the first session goes to Principal, STARTING');
SELECT results_eq(
    $$SELECT waha_server_id FROM public.allocate_waha_session('0f0f0f0f-0000-4000-8000-000000000005', 'cliente-002')$$,
    $$VALUES ('0f0f0f0f-0000-4000-8000-0000000000f2'::uuid)$$,
    'Principal is full: the next goes to Backup');
SELECT results_eq($$SELECT nome::text, sessions_ativas FROM public.waha_servers ORDER BY prioridade DESC$$,
                  $$VALUES ('Principal', 1), ('Backup', 1)$$, 'each allocation took its slot');
SELECT throws_ok($$SELECT * FROM public.allocate_waha_session('0f0f0f0f-0000-4000-8000-000000000005', 'cliente-003')$$,
                 'WAH10', NULL, 'nothing free: SQLSTATE WAH10');
SELECT throws_ok($$SELECT * FROM public.allocate_waha_session('0e0e0e0e-0000-4000-8000-000000000006', 'intrusa')$$,
                 'WAH10', NULL, 'Elisa cannot allocate on Fabio''s servers');

SELECT ok((SELECT public.release_waha_session(id) FROM public.waha_sessions WHERE session_name = 'cliente-001'),
          'releasing a session gives its slot back');
SELECT ok(NOT (SELECT public.release_waha_session(id) FROM public.waha_sessions WHERE session_name = 'cliente-001'),
          'releasing it again gives nothing back');
SELECT results_eq($$SELECT nome::text, sessions_ativas FROM public.waha_servers ORDER BY prioridade DESC$$,
                  $$VALUES ('Principal', 0), ('Backup', 1)$$, 'the released slot is free again, once');
SELECT throws_ok($$SELECT * FROM public.allocate_waha_session('0f0f0f0f-0000-4000-8000-000000000005', 'nome inválido!')$$,
                 '23514', NULL, 'a session name outside WAHA''s rule is refused, and takes no slot');
SELECT results_eq(
    $$SELECT waha_server_id FROM public.allocate_waha_session('0f0f0f0f-0000-4000-8000-000000000005', 'cliente-003')$$,
    $$VALUES ('0f0f0f0f-0000-4000-8000-0000000000f1'::uuid)$$,
    'the freed slot on Principal is taken again');

SELECT * FROM finish();
ROLLBACK;
