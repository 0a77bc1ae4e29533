-- waha-db: get_available_waha_server picks a user's server by the seed's rules: active, with a
-- free slot, not excluded; highest prioridade, then lowest load sessions_ativas / max_sessions.
--
-- Written by `waha-db export supabase`, which brings this file to each release's tests: keep
-- your own tests in other files. pgTAP, for `supabase test db` (pgTAP in schema extensions, on
-- Supabase's search_path) or `pg_prove -d "$DATABASE_URL" supabase/tests/waha_*.sql`.
-- Runs in a transaction that is rolled back: changes nothing.
BEGIN;
SELECT plan(9);

DO $$
BEGIN
    IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
        INSERT INTO auth.users (id, email) VALUES
            ('0c0c0c0c-0000-4000-8000-000000000003', 'carla@waha-db.test'),
            ('0d0d0d0d-0000-4000-8000-000000000004', 'davi@waha-db.test');
    END IF;
END
$$;

-- The seed's "Cenário 1" and "Cenário 3", positional INSERTs as the seed writes them.
INSERT INTO public.waha_servers VALUES (
    '0c0c0c0c-0000-4000-8000-0000000000c1', '0c0c0c0c-0000-4000-8000-000000000003', 'Principal',
    'https://waha-prod.example', 'key1',
    'Servidor principal', true,
    NULL, NULL, 30, 3, 100, 10, 100, 0,
    NOW(), NOW()
);
INSERT INTO public.waha_servers VALUES (
    '0c0c0c0c-0000-4000-8000-0000000000c2', '0c0c0c0c-0000-4000-8000-000000000003', 'Backup',
    'https://waha-backup.example', 'key2',
    'Servidor de backup', true,
    NULL, NULL, 30, 3, 100, 5, 50, 0,
    NOW(), NOW()
);
INSERT INTO public.waha_servers VALUES (
    '0c0c0c0c-0000-4000-8000-0000000000c3', '0c0c0c0c-0000-4000-8000-000000000003', 'Teste',
    'https://waha-test.example', NULL,
    'Servidor de teste', false,
    NULL, NULL, 30, 3, 100, 10, 10, 0,
    NOW(), NOW()
);

SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0c0c0c0c-0000-4000-8000-000000000003')$$,
                  $$VALUES ('Principal')$$, 'the highest priority wins (an inactive server never does)');
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server(user_uuid => '0c0c0c0c-0000-4000-8000-000000000003')$$,
                  $$VALUES ('Principal')$$, 'called by parameter name, as supabase.rpc does');
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0c0c0c0c-0000-4000-8000-000000000003',
                                                                            ARRAY['0c0c0c0c-0000-4000-8000-0000000000c1']::uuid[])$$,
                  $$VALUES ('Backup')$$, 'the app''s fallback: excluding the failed Principal gives Backup');

UPDATE public.waha_servers SET sessions_ativas = max_sessions WHERE nome = 'Principal' AND user_id = '0c0c0c0c-0000-4000-8000-000000000003';
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0c0c0c0c-0000-4000-8000-000000000003')$$,
                  $$VALUES ('Backup')$$, 'a full Principal gives way to Backup');

UPDATE public.waha_servers SET sessions_ativas = max_sessions WHERE user_id = '0c0c0c0c-0000-4000-8000-000000000003';
SELECT is_empty($$SELECT * FROM public.get_available_waha_server('0c0c0c0c-0000-4000-8000-000000000003')$$,
                'no row when every active server is full');
SELECT is_empty($$SELECT * FROM public.get_available_waha_server('0e0e0e0e-0000-4000-8000-00000000ffff')$$,
                'no row, and no error, for a user without servers');

-- Regional servers of one priority: the lowest load wins, as an exact ratio (33/100 < 1/3).
INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, max_sessions, sessions_ativas) VALUES
    ('0d0d0d0d-0000-4000-8000-000000000004', 'Brasil', 'https://waha-br.example', 8, 3, 1),
    ('0d0d0d0d-0000-4000-8000-000000000004', 'EUA', 'https://waha-us.example', 8, 100, 33),
    ('0d0d0d0d-0000-4000-8000-000000000004', 'Europa', 'https://waha-eu.example', 6, 100, 0);
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0d0d0d0d-0000-4000-8000-000000000004')$$,
                  $$VALUES ('EUA')$$, 'same priority: the lower load wins, computed exactly');
UPDATE public.waha_servers SET sessions_ativas = 0 WHERE prioridade = 8 AND user_id = '0d0d0d0d-0000-4000-8000-000000000004';
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0d0d0d0d-0000-4000-8000-000000000004')$$,
                  $$VALUES ('EUA')$$, 'same priority and load: more free slots win');
UPDATE public.waha_servers SET ativo = false WHERE prioridade = 8 AND user_id = '0d0d0d0d-0000-4000-8000-000000000004';
SELECT results_eq($$SELECT nome::text FROM public.get_available_waha_server('0d0d0d0d-0000-4000-8000-000000000004')$$,
                  $$VALUES ('Europa')$$, 'a lower priority is used when the higher ones are switched off');

SELECT * FROM finish();
ROLLBACK;
