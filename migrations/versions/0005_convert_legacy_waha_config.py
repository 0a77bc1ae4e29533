"""Convert the legacy singleton waha_config into a waha_servers row, then retire it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Every decision is made in SQL, so the offline `--sql` script behaves as the online
run does. The owner comes from the transaction setting waha.config_owner (set by
`-x owner=UUID` / `waha-db upgrade --owner UUID`) or, for an offline script, from
`SET waha.config_owner = 'UUID'` in psql before running it.

- Legacy variants: missing columns read as NULL, NULLs take the defaults, extra
  columns are ignored (and kept, see below). Every value is read as text and checked
  before any cast, so a legacy column of another type is reported, not cast blindly.
  A row whose api_url is NULL or blank has nothing to convert.
- Mapping (the seed's): nome 'Servidor Padrão', prioridade 10, max_sessions 50, the
  rest copied. The server's id is derived from the legacy row's id, so the
  conversion is idempotent and the row is findable again.
- Refusals (the whole upgrade is one transaction, so nothing is changed): a
  convertible row and no owner (WAH01), an owner that is not a UUID or not a user
  in auth.users (WAH02), legacy values the V2.1 rules refuse, all listed (WAH03), a
  converted row not found in waha_servers (WAH04).
- waha_config leaves public only once every convertible row is verifiably in
  waha_servers. A table this project created (0001) and that stayed empty is
  dropped; any other is kept, with all its columns and values, as
  waha_legacy.waha_config_v1, and the downgrade puts it back as public.waha_config.
  The downgrade leaves the converted server in waha_servers (sessions may use it);
  upgrading again finds it and creates no duplicate.

The SQL is a plain (not f-) string: no bind-parameter colons, no doubled braces.
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CREATED_MARKER = "waha-db 0001 - legacy WAHA configuration (V1 singleton)"

UPGRADE_SQL = r"""
DO $$
DECLARE
    legacy_table constant regclass := pg_catalog.to_regclass('public.waha_config');
    owner_setting constant text := NULLIF(pg_catalog.btrim(pg_catalog.current_setting('waha.config_owner', true)), '');
    legacy_columns text[];
    legacy_query text;
    legacy record;
    owner_id uuid;
    owner_known boolean;
    problems text[] := '{}';
    convertible integer := 0;
    converted integer := 0;
    inserted integer;
    server_id uuid;
    column_name text;
    column_value text;
BEGIN
    IF legacy_table IS NULL THEN
        RAISE NOTICE 'no legacy waha_config table: nothing to convert';
        RETURN;
    END IF;

    SELECT pg_catalog.array_agg(attribute.attname::text) INTO legacy_columns
    FROM pg_catalog.pg_attribute AS attribute
    WHERE attribute.attrelid = legacy_table AND attribute.attnum > 0 AND NOT attribute.attisdropped;

    -- The legacy rows as text, read through whichever columns this variant has.
    legacy_query := pg_catalog.format(
        'SELECT %s AS legacy_id, %s AS api_url, %s AS api_key, %s AS webhook_url, %s AS webhook_secret, '
        '%s AS timeout, %s AS retry_attempts, %s AS rate_limit FROM public.waha_config ORDER BY 1',
        CASE WHEN 'id' = ANY (legacy_columns) THEN 'id::text' ELSE 'pg_catalog.row_number() OVER (ORDER BY ctid)::text' END,
        CASE WHEN 'api_url' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(api_url::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'api_key' = ANY (legacy_columns) THEN 'api_key::text' ELSE 'NULL::text' END,
        CASE WHEN 'webhook_url' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(webhook_url::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'webhook_secret' = ANY (legacy_columns) THEN 'webhook_secret::text' ELSE 'NULL::text' END,
        CASE WHEN 'timeout' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(timeout::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'retry_attempts' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(retry_attempts::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'rate_limit' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(rate_limit::text), '''')' ELSE 'NULL::text' END
    );

    -- First pass: count what is convertible and list every value V2.1 would refuse.
    FOR legacy IN EXECUTE legacy_query LOOP
        CONTINUE WHEN legacy.api_url IS NULL;
        convertible := convertible + 1;
        -- The URL rule of 0002's CHECKs, character for character.
        IF legacy.api_url !~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$' THEN
            problems := problems || pg_catalog.format('waha_config id=%s: api_url %L is not an http:// or https:// URL', legacy.legacy_id, legacy.api_url);
        END IF;
        IF legacy.webhook_url !~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$' THEN
            problems := problems || pg_catalog.format('waha_config id=%s: webhook_url %L is not an http:// or https:// URL (set it to NULL if there is no webhook)', legacy.legacy_id, legacy.webhook_url);
        END IF;
        FOREACH column_name IN ARRAY ARRAY['timeout', 'retry_attempts', 'rate_limit'] LOOP
            column_value := CASE column_name WHEN 'timeout' THEN legacy.timeout
                                             WHEN 'retry_attempts' THEN legacy.retry_attempts
                                             ELSE legacy.rate_limit END;
            CONTINUE WHEN column_value IS NULL;
            IF column_value !~ '^[+-]?[0-9]{1,10}$' OR column_value::numeric NOT BETWEEN -2147483648 AND 2147483647 THEN
                problems := problems || pg_catalog.format('waha_config id=%s: %s %L is not a whole number', legacy.legacy_id, column_name, column_value);
            ELSIF column_name = 'retry_attempts' AND column_value::integer < 0 THEN
                problems := problems || pg_catalog.format('waha_config id=%s: retry_attempts %s is negative (V2.1 wants >= 0)', legacy.legacy_id, column_value);
            ELSIF column_name <> 'retry_attempts' AND column_value::integer <= 0 THEN
                problems := problems || pg_catalog.format('waha_config id=%s: %s %s is not positive (V2.1 wants > 0)', legacy.legacy_id, column_name, column_value);
            END IF;
        END LOOP;
    END LOOP;

    IF convertible = 0 THEN
        RAISE NOTICE 'waha_config holds no row with an api_url: nothing to convert';
    ELSE
        IF owner_setting IS NULL THEN
            RAISE EXCEPTION 'waha_config holds a WAHA server to convert, but no owner was given'
                USING ERRCODE = 'WAH01',
                      DETAIL = 'The V2.1 schema gives every WAHA server an owner (waha_servers.user_id); the legacy singleton had none.',
                      HINT = 'Give the id of the user who will own it, then run the upgrade again: '
                             '`waha-db upgrade --owner UUID`, `alembic -x owner=UUID upgrade head`, '
                             'or, for an offline script, `SET waha.config_owner = ''UUID'';` in psql before running it.';
        END IF;
        IF owner_setting !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            RAISE EXCEPTION 'the owner of the legacy WAHA server, %, is not a UUID', pg_catalog.quote_literal(owner_setting)
                USING ERRCODE = 'WAH02',
                      HINT = 'Give the id of a user (auth.users.id on Supabase), e.g. SET waha.config_owner = ''0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44'';';
        END IF;
        owner_id := owner_setting::uuid;
        IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
            EXECUTE 'SELECT EXISTS (SELECT FROM auth.users WHERE id = $1)' INTO owner_known USING owner_id;
            IF NOT owner_known THEN
                RAISE EXCEPTION 'the owner of the legacy WAHA server, %, is not a user in auth.users', owner_id
                    USING ERRCODE = 'WAH02',
                          HINT = 'Give the id of an existing user: SELECT id, email FROM auth.users;';
            END IF;
        END IF;
        IF pg_catalog.cardinality(problems) > 0 THEN
            RAISE EXCEPTION 'waha_config holds values the V2.1 schema refuses:%', E'\n  - ' || pg_catalog.array_to_string(problems, E'\n  - ')
                USING ERRCODE = 'WAH03',
                      HINT = 'Correct them in public.waha_config (e.g. UPDATE public.waha_config SET api_url = ''https://waha.example.com'' WHERE id = 1;), '
                             'or clear api_url to leave the row unconverted, then run the upgrade again.';
        END IF;

        -- Second pass: insert, then verify that each row is in waha_servers.
        FOR legacy IN EXECUTE legacy_query LOOP
            CONTINUE WHEN legacy.api_url IS NULL;
            server_id := pg_catalog.md5('waha-db legacy waha_config ' || legacy.legacy_id)::uuid;
            INSERT INTO public.waha_servers (
                id, user_id, nome, api_url, api_key, webhook_url, webhook_secret,
                timeout, retry_attempts, rate_limit, prioridade, max_sessions
            ) VALUES (
                server_id, owner_id, 'Servidor Padrão', legacy.api_url, legacy.api_key,
                legacy.webhook_url, legacy.webhook_secret,
                COALESCE(legacy.timeout::integer, 30),
                COALESCE(legacy.retry_attempts::integer, 3),
                COALESCE(legacy.rate_limit::integer, 100),
                10, 50
            )
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS inserted = ROW_COUNT;
            converted := converted + inserted;
            IF NOT EXISTS (
                SELECT FROM public.waha_servers AS server
                WHERE server.id = server_id OR (server.user_id = owner_id AND server.api_url = legacy.api_url)
            ) THEN
                RAISE EXCEPTION 'waha_config row id=% (%) is not in waha_servers after the conversion', legacy.legacy_id, legacy.api_url
                    USING ERRCODE = 'WAH04',
                          HINT = pg_catalog.format('Look for a conflicting server: SELECT id, user_id, api_url FROM public.waha_servers WHERE id = %L OR api_url = %L;', server_id, legacy.api_url);
            END IF;
            RAISE NOTICE 'waha_config row id=% (%) is WAHA server "Servidor Padrão" of user % (%)',
                legacy.legacy_id, legacy.api_url, owner_id,
                CASE WHEN inserted = 1 THEN 'converted now' ELSE 'already there, kept as it is' END;
        END LOOP;
    END IF;

    IF pg_catalog.obj_description(legacy_table, 'pg_class') IS NOT DISTINCT FROM '@CREATED_MARKER@'
       AND NOT EXISTS (SELECT FROM public.waha_config) THEN
        DROP TABLE public.waha_config;
    ELSE
        CREATE SCHEMA IF NOT EXISTS waha_legacy;
        COMMENT ON SCHEMA waha_legacy IS 'waha-db - the legacy waha_config, kept as it was for a downgrade below 0005';
        REVOKE ALL ON SCHEMA waha_legacy FROM PUBLIC;
        ALTER TABLE public.waha_config SET SCHEMA waha_legacy;
        ALTER TABLE waha_legacy.waha_config RENAME TO waha_config_v1;
        RAISE NOTICE 'public.waha_config moved to waha_legacy.waha_config_v1 with all its columns and rows; a downgrade below 0005 puts it back';
    END IF;
END
$$
""".replace("@CREATED_MARKER@", CREATED_MARKER)

DOWNGRADE_SQL = r"""
DO $$
BEGIN
    IF pg_catalog.to_regclass('waha_legacy.waha_config_v1') IS NOT NULL THEN
        ALTER TABLE waha_legacy.waha_config_v1 SET SCHEMA public;
        ALTER TABLE public.waha_config_v1 RENAME TO waha_config;
        DROP SCHEMA waha_legacy;
        RAISE NOTICE 'waha_config is back in public as it was before the upgrade; the converted server stays in waha_servers';
    ELSIF pg_catalog.to_regclass('public.waha_config') IS NULL THEN
        CREATE TABLE public.waha_config (
            id integer PRIMARY KEY CHECK (id = 1),
            api_url text,
            api_key text,
            webhook_url text,
            webhook_secret text,
            timeout integer,
            retry_attempts integer,
            rate_limit integer,
            created_at timestamptz DEFAULT pg_catalog.now(),
            updated_at timestamptz DEFAULT pg_catalog.now()
        );
        COMMENT ON TABLE public.waha_config IS '@CREATED_MARKER@';
        REVOKE ALL ON TABLE public.waha_config FROM PUBLIC;
    END IF;
END
$$
""".replace("@CREATED_MARKER@", CREATED_MARKER)


def upgrade() -> None:
    op.execute(UPGRADE_SQL)


def downgrade() -> None:
    op.execute(DOWNGRADE_SQL)
