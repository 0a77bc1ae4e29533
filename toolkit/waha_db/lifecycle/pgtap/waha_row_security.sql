-- waha-db: row security keeps each user to their own WAHA servers and sessions, for users
-- signed in the Supabase way (role authenticated, the JWT's claims in request.jwt.claims).
--
-- Written by `waha-db export supabase`, which brings this file to each release's tests: keep
-- your own tests in other files. pgTAP, for `supabase test db` (pgTAP in schema extensions, on
-- Supabase's search_path) or `pg_prove -d "$DATABASE_URL" supabase/tests/waha_*.sql`.
-- Runs in a transaction that is rolled back: changes nothing.
BEGIN;
SELECT plan(14);

-- Ana and Bruno (rows of auth.users on Supabase), each with a server holding one session.
DO $$
BEGIN
    IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
        INSERT INTO auth.users (id, email) VALUES
            ('0a0a0a0a-0000-4000-8000-000000000001', 'ana@waha-db.test'),
            ('0b0b0b0b-0000-4000-8000-000000000002', 'bruno@waha-db.test');
    END IF;
END
$$;
INSERT INTO public.waha_servers (id, user_id, nome, api_url, prioridade) VALUES
    ('0a0a0a0a-0000-4000-8000-0000000000a1', '0a0a0a0a-0000-4000-8000-000000000001', 'Ana Principal', 'https://ana.waha.example', 10),
    ('0b0b0b0b-0000-4000-8000-0000000000b1', '0b0b0b0b-0000-4000-8000-000000000002', 'Bruno Principal', 'https://bruno.waha.example', 10);
INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES
    ('0a0a0a0a-0000-4000-8000-000000000001', '0a0a0a0a-0000-4000-8000-0000000000a1', 'ana-01'),
    ('0b0b0b0b-0000-4000-8000-000000000002', '0b0b0b0b-0000-4000-8000-0000000000b1', 'bruno-01');

-- Ana signs in, as Supabase's API does for her requests.
SET LOCAL ROLE authenticated;
SELECT pg_catalog.set_config('request.jwt.claims', '{"sub": "0a0a0a0a-0000-4000-8000-000000000001", "role": "authenticated"}', true);

SELECT results_eq('SELECT nome::text FROM public.waha_servers', $$VALUES ('Ana Principal')$$,
                  'Ana sees only her servers');
SELECT results_eq('SELECT session_name::text FROM public.waha_sessions', $$VALUES ('ana-01')$$,
                  'Ana sees only her sessions');
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0a0a0a0a-0000-4000-8000-000000000001')$$,
                  $$VALUES ('Ana Principal')$$, 'Ana picks her own server');
SELECT is_empty($$SELECT * FROM public.get_available_waha_server('0b0b0b0b-0000-4000-8000-000000000002')$$,
                'Ana cannot pick Bruno''s servers');
SELECT throws_ok($$INSERT INTO public.waha_servers (user_id, nome, api_url)
                   VALUES ('0b0b0b0b-0000-4000-8000-000000000002', 'Intruso', 'https://intruso.waha.example')$$,
                 '42501', NULL, 'Ana cannot add a server in Bruno''s name');
SELECT throws_ok($$INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name)
                   VALUES ('0a0a0a0a-0000-4000-8000-000000000001', '0b0b0b0b-0000-4000-8000-0000000000b1', 'parked')$$,
                 '23503', NULL, 'Ana cannot park a session on Bruno''s server');
WITH changed AS (
    UPDATE public.waha_servers SET ativo = false WHERE id = '0b0b0b0b-0000-4000-8000-0000000000b1' RETURNING id
)
SELECT is(pg_catalog.count(*)::integer, 0, 'Ana cannot switch off Bruno''s server') FROM changed;
WITH deleted AS (
    DELETE FROM public.waha_sessions WHERE session_name = 'bruno-01' RETURNING id
)
SELECT is(pg_catalog.count(*)::integer, 0, 'Ana cannot delete Bruno''s session') FROM deleted;
SELECT lives_ok($$INSERT INTO public.waha_servers (user_id, nome, api_url)
                  VALUES ('0a0a0a0a-0000-4000-8000-000000000001', 'Ana Backup', 'https://ana-backup.waha.example')$$,
                'Ana adds a server of her own');

-- Bruno signs in (the legacy claim Supabase still honours, request.jwt.claim.sub, works too).
SELECT pg_catalog.set_config('request.jwt.claims', '', true);
SELECT pg_catalog.set_config('request.jwt.claim.sub', '0b0b0b0b-0000-4000-8000-000000000002', true);
SELECT results_eq('SELECT nome::text FROM public.waha_servers', $$VALUES ('Bruno Principal')$$,
                  'Bruno sees only his servers');

-- Signed in without claims: nothing; anonymous: no access at all.
SELECT pg_catalog.set_config('request.jwt.claim.sub', '', true);
SELECT is_empty('SELECT * FROM public.waha_servers', 'a request without a user sees no server');
SET LOCAL ROLE anon;
SELECT throws_ok('SELECT * FROM public.waha_servers', '42501', NULL, 'anonymous visitors cannot read servers');
RESET ROLE;

-- What the table owner sees afterwards: Bruno's rows untouched.
SELECT ok((SELECT ativo FROM public.waha_servers WHERE id = '0b0b0b0b-0000-4000-8000-0000000000b1'),
          'Bruno''s server is still active');
SELECT results_eq($$SELECT session_name::text FROM public.waha_sessions ORDER BY session_name$$,
                  $$VALUES ('ana-01'), ('bruno-01')$$, 'both sessions are still there');

SELECT * FROM finish();
ROLLBACK;
