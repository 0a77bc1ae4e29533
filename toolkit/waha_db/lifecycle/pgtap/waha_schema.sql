-- waha-db: the WAHA multi-server schema V2.1 as the app relies on it: tables, columns, keys,
-- functions, row security and grants, and alembic_version out of the API's reach.
--
-- Written by `waha-db export supabase`, which brings this file to each release's tests: keep
-- your own tests in other files. pgTAP, for `supabase test db` (pgTAP in schema extensions, on
-- Supabase's search_path) or `pg_prove -d "$DATABASE_URL" supabase/tests/waha_*.sql`.
-- Runs in a transaction that is rolled back: changes nothing.
BEGIN;
SELECT plan(32);

SELECT has_table('public', 'waha_servers', 'table waha_servers exists');
SELECT has_table('public', 'waha_sessions', 'table waha_sessions exists');

-- The seed inserts positionally: its columns come first, in its order, with these types.
SELECT is(
    (ARRAY(SELECT attribute.attname || ' ' || pg_catalog.format_type(attribute.atttypid, attribute.atttypmod)
           FROM pg_catalog.pg_attribute AS attribute
           WHERE attribute.attrelid = 'public.waha_servers'::regclass AND attribute.attnum > 0 AND NOT attribute.attisdropped
           ORDER BY attribute.attnum))[1:17],
    ARRAY['id uuid', 'user_id uuid', 'nome character varying(255)', 'api_url text', 'api_key text', 'descricao text',
          'ativo boolean', 'webhook_url text', 'webhook_secret text', 'timeout integer', 'retry_attempts integer',
          'rate_limit integer', 'prioridade integer', 'max_sessions integer', 'sessions_ativas integer',
          'created_at timestamp with time zone', 'updated_at timestamp with time zone'],
    'waha_servers has the seed''s columns in the seed''s order'
);
SELECT is(
    (ARRAY(SELECT attribute.attname || ' ' || pg_catalog.format_type(attribute.atttypid, attribute.atttypmod)
           FROM pg_catalog.pg_attribute AS attribute
           WHERE attribute.attrelid = 'public.waha_sessions'::regclass AND attribute.attnum > 0 AND NOT attribute.attisdropped
           ORDER BY attribute.attnum))[1:11],
    ARRAY['id uuid', 'user_id uuid', 'waha_server_id uuid', 'session_name character varying(255)',
          'status character varying(50)', 'phone_number character varying(20)', 'profile_name character varying(255)',
          'qr_code text', 'last_connected_at timestamp with time zone', 'created_at timestamp with time zone',
          'updated_at timestamp with time zone'],
    'waha_sessions has the seed''s columns in the seed''s order'
);

SELECT col_is_pk('public', 'waha_servers', 'id', 'waha_servers.id is the primary key');
SELECT col_is_pk('public', 'waha_sessions', 'id', 'waha_sessions.id is the primary key');
SELECT col_not_null('public', 'waha_servers', 'user_id', 'every server has an owner');
SELECT col_not_null('public', 'waha_sessions', 'waha_server_id', 'every session is on a server');
SELECT col_default_is('public', 'waha_servers', 'ativo', 'true', 'a new server is active');
SELECT col_default_is('public', 'waha_servers', 'prioridade', '0', 'a new server has priority 0');
SELECT col_default_is('public', 'waha_servers', 'max_sessions', '50', 'a new server takes 50 sessions');
SELECT col_default_is('public', 'waha_servers', 'sessions_ativas', '0', 'a new server has no session');
SELECT col_default_is('public', 'waha_sessions', 'status', 'STOPPED', 'a new session is STOPPED');
SELECT col_is_unique('public', 'waha_servers', ARRAY['user_id', 'api_url'], 'one URL per user');
SELECT col_is_unique('public', 'waha_sessions', ARRAY['waha_server_id', 'session_name'], 'one session name per server');
SELECT fk_ok('public', 'waha_sessions', ARRAY['waha_server_id', 'user_id'], 'public', 'waha_servers', ARRAY['id', 'user_id'],
             'a session is on a server of its own user');

SELECT function_returns('public', 'get_available_waha_server', ARRAY['uuid', 'uuid[]'], 'setof waha_servers',
                        'get_available_waha_server(user_uuid, excluded_server_ids) returns servers');
SELECT is((SELECT proargnames[1] FROM pg_catalog.pg_proc WHERE oid = 'public.get_available_waha_server(uuid, uuid[])'::regprocedure),
          'user_uuid', 'the app calls it by name: rpc(''get_available_waha_server'', { user_uuid })');
SELECT function_returns('public', 'allocate_waha_session', ARRAY['uuid', 'text', 'uuid[]'], 'waha_sessions',
                        'allocate_waha_session(user_uuid, session_name, excluded_server_ids) returns the new session');
SELECT function_returns('public', 'release_waha_session', ARRAY['uuid'], 'boolean',
                        'release_waha_session(session_id) says whether it gave a slot back');

SELECT ok((SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'public.waha_servers'::regclass),
          'row security is on for waha_servers');
SELECT ok((SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'public.waha_sessions'::regclass),
          'row security is on for waha_sessions');
SELECT policies_are('public', 'waha_servers',
                    ARRAY['waha_servers_select_own', 'waha_servers_insert_own', 'waha_servers_update_own', 'waha_servers_delete_own'],
                    'waha_servers has one policy per command');
SELECT policies_are('public', 'waha_sessions',
                    ARRAY['waha_sessions_select_own', 'waha_sessions_insert_own', 'waha_sessions_update_own', 'waha_sessions_delete_own'],
                    'waha_sessions has one policy per command');
SELECT table_privs_are('public', 'waha_servers', 'authenticated', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
                       'signed-in users may read and write servers, never TRUNCATE');
SELECT table_privs_are('public', 'waha_sessions', 'authenticated', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
                       'signed-in users may read and write sessions, never TRUNCATE');
SELECT table_privs_are('public', 'waha_servers', 'anon', ARRAY[]::text[], 'anonymous visitors get nothing on servers');
SELECT table_privs_are('public', 'waha_sessions', 'anon', ARRAY[]::text[], 'anonymous visitors get nothing on sessions');
SELECT function_privs_are('public', 'get_available_waha_server', ARRAY['uuid', 'uuid[]'], 'authenticated', ARRAY['EXECUTE'],
                          'signed-in users may call get_available_waha_server');

-- waha-db's record of the revision is not the app's: a visitor who could move it could make an
-- upgrade fail, or an exported migration skip itself.
SELECT ok((SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'public.alembic_version'::regclass),
          'row security is on for alembic_version');
SELECT table_privs_are('public', 'alembic_version', 'anon', ARRAY[]::text[], 'anonymous visitors get nothing on alembic_version');
SELECT table_privs_are('public', 'alembic_version', 'authenticated', ARRAY[]::text[],
                       'signed-in users get nothing on alembic_version');

SELECT * FROM finish();
ROLLBACK;
