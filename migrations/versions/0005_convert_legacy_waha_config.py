"""Convert the legacy singleton waha_config into a waha_servers row, then retire it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Every decision is made in SQL, so the offline `--sql` script behaves as the online
run does. The owner comes from the transaction setting waha.config_owner (set by
`-x owner=UUID` / `waha-db upgrade --owner UUID`) or, for an offline script, from
`SET waha.config_owner = 'UUID'` in psql before running it.

- Legacy variants: missing columns read as NULL, NULLs take the defaults, extra
  columns are ignored. A row whose api_url is NULL or blank has nothing to convert.
- Mapping (the seed's): nome 'Servidor Padrão', prioridade 10, max_sessions 50, the
  rest copied. The server's id is derived from the legacy row's id, so the
  conversion is idempotent and the row is findable again.
- Refusals (the whole upgrade is one transaction, so nothing is changed): a
  convertible row and no owner (WAH01), an owner that is not a UUID or not a user
  in auth.users (WAH02), legacy values the V2.1 rules refuse (WAH03), a converted
  row not found in waha_servers (WAH04).
- waha_config leaves public only once every convertible row is verifiably in
  waha_servers. A table this project created empty is dropped; any other is kept,
  with all its columns and values, as waha_legacy.waha_config_v1, and the
  downgrade puts it back as public.waha_config.
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CREATED_MARKER = "waha-db 0001 - legacy WAHA configuration (V1 singleton)"


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        DECLARE
            legacy_table constant regclass := pg_catalog.to_regclass('public.waha_config');
            owner_setting constant text := NULLIF(pg_catalog.btrim(pg_catalog.current_setting('waha.config_owner', true)), '');
            legacy_columns text[];
            owner_id uuid;
            problems text[];
            legacy record;
            owner_known boolean;
            convertible integer;
            converted integer := 0;
            inserted integer;
        BEGIN
            IF legacy_table IS NULL THEN
                RAISE NOTICE 'no legacy waha_config table: nothing to convert';
                RETURN;
            END IF;

            SELECT pg_catalog.array_agg(attname::text) INTO legacy_columns
            FROM pg_catalog.pg_attribute
            WHERE attrelid = legacy_table AND attnum > 0 AND NOT attisdropped;

            -- The legacy rows, read through whichever columns this variant has.
            EXECUTE pg_catalog.format(
                'CREATE TEMPORARY TABLE waha_legacy_rows ON COMMIT DROP AS '
                'SELECT %s AS legacy_id, %s AS api_url, %s AS api_key, %s AS webhook_url, '
                '%s AS webhook_secret, %s AS timeout, %s AS retry_attempts, %s AS rate_limit '
                'FROM public.waha_config',
                CASE WHEN 'id' = ANY (legacy_columns) THEN 'id::integer' ELSE '1' END,
                CASE WHEN 'api_url' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(api_url::text), '''')' ELSE 'NULL::text' END,
                CASE WHEN 'api_key' = ANY (legacy_columns) THEN 'api_key::text' ELSE 'NULL::text' END,
                CASE WHEN 'webhook_url' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(webhook_url::text), '''')' ELSE 'NULL::text' END,
                CASE WHEN 'webhook_secret' = ANY (legacy_columns) THEN 'webhook_secret::text' ELSE 'NULL::text' END,
                CASE WHEN 'timeout' = ANY (legacy_columns) THEN 'timeout::integer' ELSE 'NULL::integer' END,
                CASE WHEN 'retry_attempts' = ANY (legacy_columns) THEN 'retry_attempts::integer' ELSE 'NULL::integer' END,
                CASE WHEN 'rate_limit' = ANY (legacy_columns) THEN 'rate_limit::integer' ELSE 'NULL::integer' END
            );
            DELETE FROM pg_temp.waha_legacy_rows WHERE api_url IS NULL;
            SELECT pg_catalog.count(*) INTO convertible FROM pg_temp.waha_legacy_rows;

            IF convertible = 0 THEN
                RAISE NOTICE 'waha_config holds no row with an api_url: nothing to convert';
            ELSE
                IF owner_setting IS NULL THEN
                    RAISE EXCEPTION 'waha_config holds a WAHA server to convert, but no owner was given'
                        USING ERRCODE = 'WAH01',
                              DETAIL = 'The V2.1 schema gives every WAHA server an owner (waha_servers.user_id); the legacy singleton had none.',
                              HINT = 'Give the id of the user who will own it, then run the upgrade again, with '
                                     '`waha-db upgrade --owner UUID`, `alembic -x owner=UUID upgrade head`, '
                                     'or, for an offline script, `SET waha.config_owner = ''UUID'';` in psql before running it.';
                END IF;
                IF owner_setting !~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$' THEN
                    RAISE EXCEPTION 'the owner of the legacy WAHA server, %, is not a UUID', pg_catalog.quote_literal(owner_setting)
                        USING ERRCODE = 'WAH02',
                              HINT = 'Give the id of a user (auth.users.id), e.g. --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44.';
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

                SELECT pg_catalog.array_agg(problem ORDER BY problem) INTO problems
                FROM (
                    SELECT pg_catalog.format('row id=%s: api_url %L is not an http(s) URL', legacy_id, api_url) AS problem
                    FROM pg_temp.waha_legacy_rows WHERE api_url !~* '^https?://[^\\s/?#@]+'
                    UNION ALL
                    SELECT pg_catalog.format('row id=%s: webhook_url %L is not an http(s) URL', legacy_id, webhook_url)
                    FROM pg_temp.waha_legacy_rows WHERE webhook_url !~* '^https?://[^\\s/?#@]+'
                    UNION ALL
                    SELECT pg_catalog.format('row id=%s: timeout %s is not > 0', legacy_id, timeout)
                    FROM pg_temp.waha_legacy_rows WHERE timeout <= 0
                    UNION ALL
                    SELECT pg_catalog.format('row id=%s: retry_attempts %s is negative', legacy_id, retry_attempts)
                    FROM pg_temp.waha_legacy_rows WHERE retry_attempts < 0
                    UNION ALL
                    SELECT pg_catalog.format('row id=%s: rate_limit %s is not > 0', legacy_id, rate_limit)
                    FROM pg_temp.waha_legacy_rows WHERE rate_limit <= 0
                ) AS found;
                IF problems IS NOT NULL THEN
                    RAISE EXCEPTION 'waha_config holds values the V2.1 schema refuses: %', pg_catalog.array_to_string(problems, '; ')
                        USING ERRCODE = 'WAH03',
                              HINT = 'Correct them in public.waha_config (UPDATE public.waha_config SET ... WHERE id = ...), then run the upgrade again.';
                END IF;

                FOR legacy IN SELECT * FROM pg_temp.waha_legacy_rows ORDER BY legacy_id LOOP
                    INSERT INTO public.waha_servers (
                        id, user_id, nome, api_url, api_key, webhook_url, webhook_secret,
                        timeout, retry_attempts, rate_limit, prioridade, max_sessions
                    ) VALUES (
                        pg_catalog.md5('waha-db legacy waha_config ' || legacy.legacy_id)::uuid,
                        owner_id,
                        'Servidor Padrão',
                        legacy.api_url,
                        legacy.api_key,
                        legacy.webhook_url,
                        legacy.webhook_secret,
                        COALESCE(legacy.timeout, 30),
                        COALESCE(legacy.retry_attempts, 3),
                        COALESCE(legacy.rate_limit, 100),
                        10,
                        50
                    )
                    ON CONFLICT DO NOTHING;
                    GET DIAGNOSTICS inserted = ROW_COUNT;
                    converted := converted + inserted;
                    IF NOT EXISTS (
                        SELECT FROM public.waha_servers
                        WHERE user_id = owner_id AND api_url = legacy.api_url
                    ) THEN
                        RAISE EXCEPTION 'waha_config row id=% (%) is not in waha_servers after the conversion', legacy.legacy_id, legacy.api_url
                            USING ERRCODE = 'WAH04',
                                  HINT = 'A server with the same id and another owner or URL may exist: SELECT * FROM public.waha_servers WHERE id = md5(''waha-db legacy waha_config '' || id)::uuid;';
                    END IF;
                    RAISE NOTICE 'waha_config row id=% (%) is WAHA server "Servidor Padrão" of user % (%)',
                        legacy.legacy_id, legacy.api_url, owner_id,
                        CASE WHEN inserted = 1 THEN 'converted now' ELSE 'already there' END;
                END LOOP;
            END IF;

            IF pg_catalog.obj_description(legacy_table, 'pg_class') IS NOT DISTINCT FROM '{CREATED_MARKER}'
               AND NOT EXISTS (SELECT FROM public.waha_config) THEN
                DROP TABLE public.waha_config;
            ELSE
                CREATE SCHEMA IF NOT EXISTS waha_legacy;
                COMMENT ON SCHEMA waha_legacy IS 'waha-db - the legacy waha_config, kept as it was for a downgrade';
                REVOKE ALL ON SCHEMA waha_legacy FROM PUBLIC;
                ALTER TABLE public.waha_config SET SCHEMA waha_legacy;
                ALTER TABLE waha_legacy.waha_config RENAME TO waha_config_v1;
                RAISE NOTICE 'public.waha_config moved to waha_legacy.waha_config_v1 with all its columns and rows; a downgrade below 0005 puts it back';
            END IF;
        END
        $$;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF pg_catalog.to_regclass('waha_legacy.waha_config_v1') IS NOT NULL THEN
                ALTER TABLE waha_legacy.waha_config_v1 RENAME TO waha_config;
                ALTER TABLE waha_legacy.waha_config SET SCHEMA public;
                DROP SCHEMA waha_legacy;
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
                COMMENT ON TABLE public.waha_config IS '{CREATED_MARKER}';
                REVOKE ALL ON TABLE public.waha_config FROM PUBLIC;
            END IF;
        END
        $$;
        """
    )
