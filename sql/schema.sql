-- waha-db: the full WAHA multi-server schema V2.1 for a fresh install, revision 0012.
--
-- GENERATED from migrations/versions by `python -m waha_db.lifecycle.migrate` (waha_db.lifecycle.migrate.full_schema_sql);
-- do not edit: change the migrations and regenerate. A test fails when this file is stale.
--
-- Apply:   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/schema.sql
-- It runs in one transaction and records revision 0012 in alembic_version, so
-- `alembic upgrade head` / `waha-db upgrade` manage the database afterwards.
-- On a database with the legacy waha_config, set the owner of its server first:
--   psql -v ON_ERROR_STOP=1 -c "SET waha.config_owner = 'UUID'" -f sql/schema.sql
-- (better: `waha-db upgrade --owner UUID`, see docs/UPGRADING.md).

BEGIN;

DO $$
DECLARE
    found text;
BEGIN
    IF pg_catalog.to_regclass('public.alembic_version') IS NOT NULL THEN
        SELECT pg_catalog.string_agg(version_num, ', ') INTO found FROM public.alembic_version;
        found := COALESCE(found, 'none (alembic_version is empty)');
    END IF;
    IF found IS DISTINCT FROM NULL THEN
        RAISE EXCEPTION 'this script is for a database with no revision recorded (no alembic_version table), but this one is at revision %: nothing was changed',
                COALESCE(found, 'none (no alembic_version table)')
            USING ERRCODE = 'WAH09',
                  HINT = 'Run `waha-db status` to see where it stands, then `waha-db upgrade`, or generate the script '
                         'from its revision: `waha-db upgrade --sql FROM:head`.';
    END IF;
END
$$;

SET LOCAL lock_timeout = 30000;

DO $$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock(2002872417); END $$;

SET LOCAL lock_timeout = 2000;

SET LOCAL statement_timeout = 60000;

DO $$
BEGIN
    IF pg_catalog.to_regclass('public.alembic_version') IS NULL
       AND (pg_catalog.to_regclass('public.waha_servers') IS NOT NULL
            OR pg_catalog.to_regclass('public.waha_sessions') IS NOT NULL) THEN
        RAISE EXCEPTION 'this database holds a hand-made V2.1 schema: public.waha_servers or public.waha_sessions exists, but no Alembic revision was ever recorded (no alembic_version table)'
            USING ERRCODE = 'WAH05',
                  DETAIL = 'The migrations would fail on "relation already exists".',
                  HINT = 'Adopt the database: `waha-db adopt` (or waha_db.lifecycle.adopt.adopt) checks its tables against V2.1, lists what blocks the adoption, and otherwise completes them and records the head revision.';
    END IF;
END
$$;

DO $waha_preflight$
DECLARE
    legacy_table constant regclass := pg_catalog.to_regclass('public.waha_config');
    owner_setting constant text := NULLIF(pg_catalog.btrim(pg_catalog.current_setting('waha.config_owner', true)), '');
    defaults constant jsonb := '{"timeout": 30, "retry_attempts": 3, "rate_limit": 100}';
    limits constant jsonb := '{"timeout": 120, "retry_attempts": 10}';
    copied constant text[] := ARRAY['api_url', 'api_key', 'webhook_url', 'webhook_secret', 'timeout', 'retry_attempts', 'rate_limit'];
    legacy_columns text[];
    legacy_query text;
    legacy record;
    legacy_values jsonb;
    legacy_value text;
    server_values jsonb;
    converted record;
    owner_id uuid;
    owner_known boolean;
    row_filter text;
    column_name text;
    problems text[] := '{}';
    fixes text[] := '{}';
    conflicts text[] := '{}';
    choices text[] := '{}';
    differing text[];
    keep_legacy text[];
    keep_server text[];
    owners uuid[] := '{}';
    to_convert text[] := '{}';
    unconverted integer := 0;
BEGIN
    IF legacy_table IS NULL THEN
        RETURN;
    END IF;
    IF pg_catalog.to_regclass('public.alembic_version') IS NOT NULL THEN
        IF EXISTS (SELECT FROM public.alembic_version WHERE version_num NOT IN ('0001', '0002', '0003', '0004')) THEN
            RETURN;  -- the conversion has run already: this upgrade does not run it
        END IF;
    END IF;
    IF owner_setting IS NOT NULL THEN
        IF owner_setting !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            RAISE EXCEPTION 'the owner of the legacy WAHA server, %, is not a UUID', pg_catalog.quote_literal(owner_setting)
                USING ERRCODE = 'WAH02',
                      HINT = 'Give the id of a user (auth.users.id on Supabase): `waha-db upgrade --owner UUID`, `alembic -x owner=UUID upgrade'
                             ' head`, or SET waha.config_owner = ''UUID''; before an offline script.';
        END IF;
        owner_id := owner_setting::uuid;
    END IF;

    SELECT pg_catalog.array_agg(attribute.attname::text) INTO legacy_columns
    FROM pg_catalog.pg_attribute AS attribute
    WHERE attribute.attrelid = legacy_table AND attribute.attnum > 0 AND NOT attribute.attisdropped;
    IF NOT 'api_url' = ANY (legacy_columns) THEN
        RETURN;  -- nothing to convert
    END IF;
    legacy_query := pg_catalog.format(
        'SELECT %s AS legacy_id, NULLIF(pg_catalog.btrim(api_url::text), '''') AS api_url, %s AS api_key, %s AS webhook_url, '
        '%s AS webhook_secret, %s AS timeout, %s AS retry_attempts, %s AS rate_limit FROM public.waha_config ORDER BY 1',
        CASE WHEN 'id' = ANY (legacy_columns) THEN 'id::text' ELSE 'pg_catalog.row_number() OVER (ORDER BY ctid)::text' END,
        CASE WHEN 'api_key' = ANY (legacy_columns) THEN 'api_key::text' ELSE 'NULL::text' END,
        CASE WHEN 'webhook_url' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(webhook_url::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'webhook_secret' = ANY (legacy_columns) THEN 'webhook_secret::text' ELSE 'NULL::text' END,
        CASE WHEN 'timeout' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(timeout::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'retry_attempts' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(retry_attempts::text), '''')' ELSE 'NULL::text' END,
        CASE WHEN 'rate_limit' = ANY (legacy_columns) THEN 'NULLIF(pg_catalog.btrim(rate_limit::text), '''')' ELSE 'NULL::text' END
    );

    FOR legacy IN EXECUTE legacy_query LOOP
        CONTINUE WHEN legacy.api_url IS NULL;
        to_convert := to_convert || legacy.api_url;
        row_filter := CASE WHEN 'id' = ANY (legacy_columns)
                           THEN pg_catalog.format('id = %s', legacy.legacy_id)
                           ELSE pg_catalog.format('pg_catalog.btrim(api_url::text) = %L', legacy.api_url) END;

        -- Values V2.1 refuses, each with the statement that fixes it. A URL with a user, a password, a
        -- query or a fragment is not shown (it may hold a secret): the fix shows it without them.
        IF legacy.api_url ~ '^[^/?#]*//[^/?#]*@|[?#]' THEN
            problems := problems || pg_catalog.format('waha_config id=%s: api_url holds a user or password before the host, a query or a'
                                                      ' fragment (not shown), which V2.1 refuses', legacy.legacy_id);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET api_url = %L WHERE %s;', pg_catalog.regexp_replace(pg_catalog.regexp_replace(legacy.api_url, '^([^/?#]*//)[^/?#]*@', '\1'), '[?#].*$', ''), row_filter);
        ELSIF legacy.api_url !~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$' THEN
            problems := problems || pg_catalog.format('waha_config id=%s: api_url %L is not an http:// or https:// URL',
                legacy.legacy_id, legacy.api_url);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET api_url = %L WHERE %s;',
                CASE WHEN 'https://' || legacy.api_url ~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$' THEN 'https://' || legacy.api_url ELSE 'https://waha.example.com' END,
                    row_filter);
        END IF;
        IF legacy.webhook_url ~ '^[^/?#]*//[^/?#]*@|[?#]' THEN
            problems := problems || pg_catalog.format('waha_config id=%s: webhook_url holds a user or password before the host, a query'
                                                      ' or a fragment (not shown), which V2.1 refuses', legacy.legacy_id);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET webhook_url = %L WHERE %s;', pg_catalog.regexp_replace(pg_catalog.regexp_replace(legacy.webhook_url, '^([^/?#]*//)[^/?#]*@', '\1'), '[?#].*$', ''),
                row_filter);
        ELSIF legacy.webhook_url !~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$' THEN
            problems := problems || pg_catalog.format('waha_config id=%s: webhook_url %L is not an http:// or https:// URL (set it to NULL if'
                                                      ' there is no webhook)', legacy.legacy_id, legacy.webhook_url);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET webhook_url = %L WHERE %s;',
                CASE WHEN 'https://' || legacy.webhook_url ~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$' THEN 'https://' || legacy.webhook_url END, row_filter);
        END IF;
        legacy_values := pg_catalog.jsonb_build_object('timeout', legacy.timeout, 'retry_attempts', legacy.retry_attempts, 'rate_limit',
            legacy.rate_limit);
        FOREACH column_name IN ARRAY ARRAY['timeout', 'retry_attempts', 'rate_limit'] LOOP
            legacy_value := legacy_values ->> column_name;
            CONTINUE WHEN legacy_value IS NULL;
            IF legacy_value !~ '^[+-]?[0-9]+$' THEN
                problems := problems || pg_catalog.format('waha_config id=%s: %s %L is not a whole number',
                    legacy.legacy_id, column_name, legacy_value);
            ELSIF legacy_value::numeric NOT BETWEEN -2147483648 AND 2147483647 THEN
                problems := problems || pg_catalog.format('waha_config id=%s: %s %s is out of range (V2.1 stores an integer, at most 2147483647)',
                    legacy.legacy_id, column_name, legacy_value);
            ELSIF column_name = 'retry_attempts' AND legacy_value::integer < 0 THEN
                problems := problems || pg_catalog.format('waha_config id=%s: retry_attempts %s is negative (V2.1 wants >= 0)',
                    legacy.legacy_id, legacy_value);
            ELSIF column_name <> 'retry_attempts' AND legacy_value::integer <= 0 THEN
                problems := problems || pg_catalog.format('waha_config id=%s: %s %s is not positive (V2.1 wants > 0)',
                    legacy.legacy_id, column_name, legacy_value);
            ELSIF (limits ->> column_name) IS NOT NULL AND legacy_value::integer > (limits ->> column_name)::integer THEN
                problems := problems || pg_catalog.format('waha_config id=%s: %s %s is above %s (V2.1 wants at most %s)',
                    legacy.legacy_id, column_name, legacy_value, limits ->> column_name, limits ->> column_name);
                fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET %I = %s WHERE %s;  -- V2.1''s maximum',
                    column_name, limits ->> column_name, row_filter);
                CONTINUE;
            ELSE
                CONTINUE;
            END IF;
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET %I = %s WHERE %s;  -- V2.1''s default',
                column_name, defaults ->> column_name, row_filter);
        END LOOP;
        CONTINUE WHEN pg_catalog.cardinality(problems) > 0 OR pg_catalog.to_regclass('public.waha_servers') IS NULL;

        -- The server this row was converted into before, if any: the conversion keeps it as it is.
        EXECUTE 'SELECT server.* FROM public.waha_servers AS server WHERE server.id = $1 '
                'OR (server.user_id = $2 AND server.api_url = $3) ORDER BY server.id = $1 DESC LIMIT 1'
            INTO converted
            USING pg_catalog.md5('waha-db legacy waha_config ' || legacy.legacy_id)::uuid, owner_id, legacy.api_url;
        IF converted.id IS NULL THEN
            unconverted := unconverted + 1;
            CONTINUE;
        END IF;
        owners := owners || converted.user_id;
        IF owner_id IS NOT NULL AND converted.user_id <> owner_id THEN
            conflicts := conflicts || pg_catalog.format(
                'waha_config id=%s was converted before into server "%s" (%s), which belongs to user %s, not to the owner given (%s)',
                legacy.legacy_id, converted.nome, converted.id, converted.user_id, owner_id);
            choices := choices || pg_catalog.format(
                'keep the server with its owner: run the upgrade without an owner (or with %s); to give it to %s, change the server''s owner'
                ' first', converted.user_id, owner_id);
        END IF;
        legacy_values := pg_catalog.jsonb_build_object(
            'api_url', legacy.api_url, 'api_key', legacy.api_key, 'webhook_url', legacy.webhook_url, 'webhook_secret', legacy.webhook_secret,
            'timeout', COALESCE(legacy.timeout::integer, 30), 'retry_attempts', COALESCE(legacy.retry_attempts::integer, 3),
            'rate_limit', COALESCE(legacy.rate_limit::integer, 100));
        server_values := pg_catalog.jsonb_build_object(
            'api_url', converted.api_url, 'api_key', converted.api_key, 'webhook_url', converted.webhook_url, 'webhook_secret',
                converted.webhook_secret,
            'timeout', converted.timeout, 'retry_attempts', converted.retry_attempts, 'rate_limit', converted.rate_limit);
        differing := '{}';
        keep_legacy := '{}';
        keep_server := '{}';
        FOREACH column_name IN ARRAY copied LOOP
            -- A column this legacy variant lacks says nothing: the server's value contradicts nothing.
            CONTINUE WHEN NOT column_name = ANY (legacy_columns)
                       OR (legacy_values -> column_name) IS NOT DISTINCT FROM (server_values -> column_name);
            differing := differing || CASE WHEN column_name IN ('api_key', 'webhook_secret')
                THEN pg_catalog.format('%s (differs; secrets are not shown)', column_name)
                ELSE pg_catalog.format('%s (waha_config %s, server %s)', column_name,
                         COALESCE(legacy_values ->> column_name, 'NULL'), COALESCE(server_values ->> column_name, 'NULL')) END;
            keep_legacy := keep_legacy || pg_catalog.format('%I = %s', column_name, CASE column_name
                WHEN 'api_url' THEN 'pg_catalog.btrim(legacy.api_url::text)'
                WHEN 'webhook_url' THEN 'NULLIF(pg_catalog.btrim(legacy.webhook_url::text), '''')'
                WHEN 'api_key' THEN 'legacy.api_key::text'
                WHEN 'webhook_secret' THEN 'legacy.webhook_secret::text'
                ELSE pg_catalog.format('COALESCE(NULLIF(pg_catalog.btrim(legacy.%I::text), '''')::integer, %s)',
                    column_name, defaults ->> column_name) END);
            keep_server := keep_server || pg_catalog.format('%I = server.%I', column_name, column_name);
        END LOOP;
        IF pg_catalog.cardinality(differing) > 0 THEN
            conflicts := conflicts || pg_catalog.format(
                'waha_config id=%s differs from server "%s" (%s) of user %s, which it was converted into before: %s',
                legacy.legacy_id, converted.nome, converted.id, converted.user_id, pg_catalog.array_to_string(differing, ', '));
            choices := choices || pg_catalog.format(
                'keep waha_config''s values: UPDATE public.waha_servers AS server SET %s FROM public.waha_config AS legacy WHERE server.id = %L'
                ' AND legacy.%s;',
                pg_catalog.array_to_string(keep_legacy, ', '), converted.id, row_filter);
            choices := choices || pg_catalog.format(
                'keep the server''s values: UPDATE public.waha_config AS legacy SET %s FROM public.waha_servers AS server WHERE server.id = %L AND'
                ' legacy.%s;',
                pg_catalog.array_to_string(keep_server, ', '), converted.id, row_filter);
        END IF;
    END LOOP;

    IF pg_catalog.cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'waha_config holds values the V2.1 schema refuses:%', E'\n  - ' || pg_catalog.array_to_string(problems, E'\n  - ')
            USING ERRCODE = 'WAH03',
                  HINT = 'Correct them in public.waha_config, then run the upgrade again:' || E'\n  ' || pg_catalog.array_to_string(fixes, E'\n  ')
                         || E'\n(or clear api_url to leave a row unconverted)';
    END IF;
    IF pg_catalog.cardinality(conflicts) > 0 THEN
        RAISE EXCEPTION 'waha_config and the WAHA server converted from it before disagree, and the conversion would keep the server as it is,'
                        ' silently:%',
                E'\n  - ' || pg_catalog.array_to_string(conflicts, E'\n  - ')
            USING ERRCODE = 'WAH07',
                  HINT = 'Choose what stays, then run the upgrade again:' || E'\n  ' || pg_catalog.array_to_string(choices, E'\n  ');
    END IF;
    IF pg_catalog.cardinality(to_convert) = 0 THEN
        RETURN;
    END IF;
    IF owner_id IS NULL THEN
        IF unconverted = 0 AND pg_catalog.cardinality(owners) > 0
           AND (SELECT pg_catalog.count(DISTINCT o) FROM pg_catalog.unnest(owners) AS o) = 1 THEN
            PERFORM pg_catalog.set_config('waha.config_owner', owners[1]::text, true);
            RAISE NOTICE 'waha_config was converted before into a server of user %, which stays its owner', owners[1];
            RETURN;
        END IF;
        RAISE EXCEPTION 'public.waha_config holds % WAHA server(s) to convert (%) and no owner was given',
                pg_catalog.cardinality(to_convert), pg_catalog.array_to_string(to_convert, ', ')
            USING ERRCODE = 'WAH01',
                  HINT = 'Give the id of the user who will own it: `waha-db upgrade --owner UUID`, `alembic -x owner=UUID upgrade head`, '
                         'or SET waha.config_owner = ''UUID''; in psql before an offline script.';
    END IF;
    IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM auth.users WHERE id = $1)' INTO owner_known USING owner_id;
        IF NOT owner_known THEN
            RAISE EXCEPTION 'the owner of the legacy WAHA server, %, is not a user in auth.users', owner_id
                USING ERRCODE = 'WAH02',
                      HINT = 'Give the id of an existing user: SELECT id, email FROM auth.users; lists them.';
        END IF;
    END IF;
END
$waha_preflight$;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001

DO $$
        BEGIN
            IF pg_catalog.to_regclass('public.waha_config') IS NULL THEN
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
                COMMENT ON TABLE public.waha_config IS 'waha-db 0001 - legacy WAHA configuration (V1 singleton)';
                REVOKE ALL ON TABLE public.waha_config FROM PUBLIC;
            END IF;
        END
        $$;

INSERT INTO alembic_version (version_num) VALUES ('0001');

-- Running upgrade 0001 -> 0002

CREATE TABLE public.waha_servers (
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL,
            nome varchar(255) NOT NULL,
            api_url text NOT NULL,
            api_key text,
            descricao text,
            ativo boolean NOT NULL DEFAULT true,
            webhook_url text,
            webhook_secret text,
            timeout integer NOT NULL DEFAULT 30,
            retry_attempts integer NOT NULL DEFAULT 3,
            rate_limit integer NOT NULL DEFAULT 100,
            prioridade integer NOT NULL DEFAULT 0,
            max_sessions integer NOT NULL DEFAULT 50,
            sessions_ativas integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT waha_servers_pkey PRIMARY KEY (id),
            CONSTRAINT waha_servers_user_id_api_url_key UNIQUE (user_id, api_url),
            CONSTRAINT waha_servers_id_user_id_key UNIQUE (id, user_id),
            CONSTRAINT waha_servers_nome_not_blank_check CHECK (nome ~ '\S'),
            CONSTRAINT waha_servers_api_url_http_check CHECK (api_url ~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$'),
            CONSTRAINT waha_servers_webhook_url_http_check CHECK (webhook_url ~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$'),
            CONSTRAINT waha_servers_timeout_positive_check CHECK (timeout > 0),
            CONSTRAINT waha_servers_retry_attempts_not_negative_check CHECK (retry_attempts >= 0),
            CONSTRAINT waha_servers_rate_limit_positive_check CHECK (rate_limit > 0),
            CONSTRAINT waha_servers_prioridade_range_check CHECK (prioridade BETWEEN 0 AND 10),
            CONSTRAINT waha_servers_max_sessions_positive_check CHECK (max_sessions > 0),
            CONSTRAINT waha_servers_sessions_ativas_not_negative_check CHECK (sessions_ativas >= 0)
        );
        COMMENT ON TABLE public.waha_servers IS 'WAHA servers of each user (V2.1). get_available_waha_server picks among them.';
        COMMENT ON COLUMN public.waha_servers.prioridade IS 'Higher wins, 0..10.';
        COMMENT ON COLUMN public.waha_servers.sessions_ativas IS 'Sessions occupying capacity on this server.';

        -- The seed's index list (user_id, ativo, prioridade); the first one also
        -- serves get_available_waha_server: the active servers of one user, best
        -- priority first. sessions_ativas is kept out of every index so that the
        -- frequent counter updates stay HOT.
        CREATE INDEX waha_servers_user_id_prioridade_idx
            ON public.waha_servers (user_id, prioridade DESC) WHERE ativo;
        CREATE INDEX waha_servers_ativo_idx ON public.waha_servers (ativo);
        CREATE INDEX waha_servers_prioridade_idx ON public.waha_servers (prioridade DESC);

        CREATE TABLE public.waha_sessions (
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL,
            waha_server_id uuid NOT NULL,
            session_name varchar(255) NOT NULL,
            status varchar(50) NOT NULL DEFAULT 'STOPPED',
            phone_number varchar(20),
            profile_name varchar(255),
            qr_code text,
            last_connected_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT waha_sessions_pkey PRIMARY KEY (id),
            CONSTRAINT waha_sessions_waha_server_id_session_name_key UNIQUE (waha_server_id, session_name),
            CONSTRAINT waha_sessions_session_name_waha_rule_check CHECK (session_name ~ '^[A-Za-z0-9_-]{1,54}$'),
            CONSTRAINT waha_sessions_waha_server_id_user_id_fkey
                FOREIGN KEY (waha_server_id, user_id)
                REFERENCES public.waha_servers (id, user_id)
        );
        COMMENT ON TABLE public.waha_sessions IS 'WhatsApp sessions on each WAHA server (V2.1).';
        COMMENT ON COLUMN public.waha_sessions.status IS 'WAHA status, free text; STOPPED, FAILED and DISCONNECTED (any case) occupy no capacity.';

        CREATE INDEX waha_sessions_user_id_idx ON public.waha_sessions (user_id);
        CREATE INDEX waha_sessions_waha_server_id_user_id_idx ON public.waha_sessions (waha_server_id, user_id);
        CREATE INDEX waha_sessions_status_idx ON public.waha_sessions (status);
        CREATE INDEX waha_sessions_session_name_idx ON public.waha_sessions (session_name);

        -- updated_at is the time of the last change, whatever the UPDATE said.
        CREATE FUNCTION public.waha_set_updated_at()
            RETURNS trigger
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        BEGIN
            NEW.updated_at := pg_catalog.now();
            RETURN NEW;
        END
        $$;
        REVOKE ALL ON FUNCTION public.waha_set_updated_at() FROM PUBLIC;

        CREATE TRIGGER waha_servers_set_updated_at
            BEFORE UPDATE ON public.waha_servers
            FOR EACH ROW EXECUTE FUNCTION public.waha_set_updated_at();
        CREATE TRIGGER waha_sessions_set_updated_at
            BEFORE UPDATE ON public.waha_sessions
            FOR EACH ROW EXECUTE FUNCTION public.waha_set_updated_at();

        -- Nobody but the owner may touch the tables until 0004 grants exactly what the
        -- spec wants: Supabase's default privileges give anon, authenticated and
        -- service_role everything on new objects in public. Revoking here, not only
        -- in 0004, also makes the privileges at this revision the same whether the
        -- roles exist or not, so 0004's downgrade can return to them exactly.
        REVOKE ALL ON TABLE public.waha_servers, public.waha_sessions FROM PUBLIC;
        DO $$
        DECLARE
            supabase_role text;
        BEGIN
            FOR supabase_role IN
                SELECT rolname FROM pg_catalog.pg_roles
                WHERE rolname IN ('anon', 'authenticated', 'service_role')
                ORDER BY rolname
            LOOP
                EXECUTE pg_catalog.format(
                    'REVOKE ALL ON TABLE public.waha_servers, public.waha_sessions FROM %I', supabase_role
                );
                EXECUTE pg_catalog.format(
                    'REVOKE ALL ON FUNCTION public.waha_set_updated_at() FROM %I', supabase_role
                );
            END LOOP;
        END
        $$;

        -- Supabase: a user's servers and sessions go with the user.
        DO $$
        BEGIN
            IF pg_catalog.to_regclass('auth.users') IS NOT NULL THEN
                ALTER TABLE public.waha_servers
                    ADD CONSTRAINT waha_servers_user_id_fkey
                    FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE;
                ALTER TABLE public.waha_sessions
                    ADD CONSTRAINT waha_sessions_user_id_fkey
                    FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE;
            ELSE
                RAISE NOTICE 'auth.users does not exist: waha_servers.user_id and waha_sessions.user_id reference no users table';
            END IF;
        END
        $$;;

UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001';

-- Running upgrade 0002 -> 0003

CREATE FUNCTION public.get_available_waha_server(
            user_uuid uuid,
            excluded_server_ids uuid[] DEFAULT '{}'
        )
            RETURNS SETOF public.waha_servers
            LANGUAGE plpgsql
            STABLE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        BEGIN
            RETURN QUERY
            SELECT server.*
            FROM public.waha_servers AS server
            WHERE server.user_id = user_uuid
              AND server.ativo
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
            ORDER BY server.prioridade DESC,
                     server.sessions_ativas::numeric(40, 30) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
        END
        $$;
        COMMENT ON FUNCTION public.get_available_waha_server(uuid, uuid[]) IS
            'The best WAHA server of a user for a new session: highest prioridade, then lowest load, among active servers with free capacity and not excluded. Zero rows when none qualifies.';

        -- Executable by nobody until 0004 grants it (PUBLIC and Supabase's default
        -- privileges would allow everyone); see 0002.
        REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM PUBLIC;
        DO $$
        DECLARE
            supabase_role text;
        BEGIN
            FOR supabase_role IN
                SELECT rolname FROM pg_catalog.pg_roles
                WHERE rolname IN ('anon', 'authenticated', 'service_role')
                ORDER BY rolname
            LOOP
                EXECUTE pg_catalog.format(
                    'REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM %I', supabase_role
                );
            END LOOP;
        END
        $$;;

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';

-- Running upgrade 0003 -> 0004

DO $$
        DECLARE
            missing text[];
            me pg_catalog.pg_roles%ROWTYPE;
        BEGIN
            SELECT pg_catalog.array_agg(wanted ORDER BY wanted) INTO missing
            FROM pg_catalog.unnest(ARRAY['authenticated', 'service_role']) AS wanted
            WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted);
            IF missing IS NULL THEN
                RETURN;
            END IF;
            SELECT * INTO me FROM pg_catalog.pg_roles WHERE rolname = current_user;
            IF NOT (me.rolsuper OR (me.rolcreaterole AND NOT 'service_role' = ANY (missing))) THEN
                RAISE EXCEPTION 'the roles % are missing and % may not create them',
                    pg_catalog.array_to_string(missing, ', '), current_user
                    USING ERRCODE = '42501',
                          HINT = 'Create them as a superuser, then run the upgrade again: '
                                 'CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS;';
            END IF;
            IF 'authenticated' = ANY (missing) THEN
                CREATE ROLE authenticated NOLOGIN;
                RAISE NOTICE 'created role authenticated (NOLOGIN): the role of signed-in users, as on Supabase';
            END IF;
            IF 'service_role' = ANY (missing) THEN
                CREATE ROLE service_role NOLOGIN BYPASSRLS;
                RAISE NOTICE 'created role service_role (NOLOGIN BYPASSRLS): the trusted back-end role, as on Supabase';
            END IF;
        END
        $$;

        CREATE FUNCTION public.waha_request_user_id()
            RETURNS uuid
            LANGUAGE sql
            STABLE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
            SELECT COALESCE(
                NULLIF(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
                NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
            )::uuid
        $$;
        COMMENT ON FUNCTION public.waha_request_user_id() IS
            'The id of the requesting user, as Supabase''s auth.uid() reads it from the request''s JWT claims; NULL when there is none.';;

ALTER TABLE public.waha_servers ENABLE ROW LEVEL SECURITY;
            CREATE POLICY waha_servers_select_own ON public.waha_servers
                FOR SELECT TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY waha_servers_insert_own ON public.waha_servers
                FOR INSERT TO authenticated
                WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY waha_servers_update_own ON public.waha_servers
                FOR UPDATE TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()))
                WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY waha_servers_delete_own ON public.waha_servers
                FOR DELETE TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()));

            REVOKE ALL ON TABLE public.waha_servers FROM PUBLIC, authenticated, service_role;
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.waha_servers TO authenticated;
            GRANT ALL ON TABLE public.waha_servers TO service_role;;

ALTER TABLE public.waha_sessions ENABLE ROW LEVEL SECURITY;
            CREATE POLICY waha_sessions_select_own ON public.waha_sessions
                FOR SELECT TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY waha_sessions_insert_own ON public.waha_sessions
                FOR INSERT TO authenticated
                WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY waha_sessions_update_own ON public.waha_sessions
                FOR UPDATE TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()))
                WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY waha_sessions_delete_own ON public.waha_sessions
                FOR DELETE TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()));

            REVOKE ALL ON TABLE public.waha_sessions FROM PUBLIC, authenticated, service_role;
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.waha_sessions TO authenticated;
            GRANT ALL ON TABLE public.waha_sessions TO service_role;;

REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM PUBLIC, authenticated, service_role;
        REVOKE ALL ON FUNCTION public.waha_request_user_id() FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.get_available_waha_server(uuid, uuid[]) TO authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.waha_request_user_id() TO authenticated, service_role;

        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON TABLE public.waha_servers, public.waha_sessions FROM anon;
                REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM anon;
                REVOKE ALL ON FUNCTION public.waha_request_user_id() FROM anon;
                REVOKE ALL ON FUNCTION public.waha_set_updated_at() FROM anon;
            END IF;
        END
        $$;
        REVOKE ALL ON FUNCTION public.waha_set_updated_at() FROM authenticated, service_role;;

UPDATE alembic_version SET version_num='0004' WHERE alembic_version.version_num = '0003';

-- Running upgrade 0004 -> 0005

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

    IF pg_catalog.obj_description(legacy_table, 'pg_class') IS NOT DISTINCT FROM 'waha-db 0001 - legacy WAHA configuration (V1 singleton)'
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
$$;

UPDATE alembic_version SET version_num='0005' WHERE alembic_version.version_num = '0004';

-- Running upgrade 0005 -> 0006

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
            'Marks an occupying session STOPPED and gives its slot back (never below zero); true when this call freed a slot, false when the session occupied none. SQLSTATE WAH11 for an unknown session.';;

REVOKE ALL ON FUNCTION public.allocate_waha_session(uuid, text, uuid[]) FROM PUBLIC, authenticated, service_role;
        REVOKE ALL ON FUNCTION public.release_waha_session(uuid) FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.allocate_waha_session(uuid, text, uuid[]) TO authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.release_waha_session(uuid) TO authenticated, service_role;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON FUNCTION public.allocate_waha_session(uuid, text, uuid[]) FROM anon;
                REVOKE ALL ON FUNCTION public.release_waha_session(uuid) FROM anon;
            END IF;
        END
        $$;;

UPDATE alembic_version SET version_num='0006' WHERE alembic_version.version_num = '0005';

-- Running upgrade 0006 -> 0007

CREATE TABLE public.waha_server_health (
            server_id uuid NOT NULL,
            user_id uuid NOT NULL,
            last_checked_at timestamptz,
            last_success_at timestamptz,
            last_failure_at timestamptz,
            consecutive_failures integer NOT NULL DEFAULT 0,
            last_error text,
            cooldown_until timestamptz,
            CONSTRAINT waha_server_health_pkey PRIMARY KEY (server_id),
            -- Declared (user_id, server_id), the order of the index that covers it:
            -- Supabase's linter wants an index whose leading columns are the key's
            -- columns in the key's order. waha_servers' UNIQUE (id, user_id) serves
            -- it in either order.
            CONSTRAINT waha_server_health_user_id_server_id_fkey
                FOREIGN KEY (user_id, server_id)
                REFERENCES public.waha_servers (user_id, id)
                ON UPDATE CASCADE ON DELETE CASCADE,
            CONSTRAINT waha_server_health_consecutive_failures_not_negative_check
                CHECK (consecutive_failures >= 0),
            CONSTRAINT waha_server_health_cooldown_only_when_failing_check
                CHECK (cooldown_until IS NULL OR consecutive_failures > 0)
        );
        COMMENT ON TABLE public.waha_server_health IS
            'Health of each WAHA server, written by report_waha_server_failure / report_waha_server_success. No row: never reported, treated as healthy.';
        COMMENT ON COLUMN public.waha_server_health.consecutive_failures IS
            'Failures since the last success; 0 is healthy.';
        COMMENT ON COLUMN public.waha_server_health.last_error IS
            'The last failure in plain words (e.g. connection refused, API key rejected); kept after a success, with last_failure_at.';
        COMMENT ON COLUMN public.waha_server_health.cooldown_until IS
            'Until then the server is ranked after every healthy server: 30 s doubling per consecutive failure, capped at 10 minutes. NULL when healthy.';

        -- Covers the foreign key (and a user's own listing under row security).
        CREATE INDEX waha_server_health_user_id_server_id_idx
            ON public.waha_server_health (user_id, server_id);
        -- A user's failing servers, by cooldown end: what selection reads.
        CREATE INDEX waha_server_health_user_id_cooldown_until_idx
            ON public.waha_server_health (user_id, cooldown_until)
            WHERE cooldown_until IS NOT NULL;

        ALTER TABLE public.waha_server_health ENABLE ROW LEVEL SECURITY;
        CREATE POLICY waha_server_health_select_own ON public.waha_server_health
            FOR SELECT TO authenticated
            USING (user_id = (SELECT public.waha_request_user_id()));
        CREATE POLICY waha_server_health_insert_own ON public.waha_server_health
            FOR INSERT TO authenticated
            WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
        CREATE POLICY waha_server_health_update_own ON public.waha_server_health
            FOR UPDATE TO authenticated
            USING (user_id = (SELECT public.waha_request_user_id()))
            WITH CHECK (user_id = (SELECT public.waha_request_user_id()));

        CREATE FUNCTION public.report_waha_server_failure(server_id uuid, reason text)
            RETURNS public.waha_server_health
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            owner_id uuid;
            recorded public.waha_server_health;
        BEGIN
            SELECT server.user_id INTO owner_id
            FROM public.waha_servers AS server
            WHERE server.id = report_waha_server_failure.server_id;
            IF owner_id IS NULL THEN
                RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_failure.server_id
                    USING ERRCODE = 'WAH20',
                          HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
            END IF;

            INSERT INTO public.waha_server_health AS health
                (server_id, user_id, last_checked_at, last_failure_at, consecutive_failures, last_error, cooldown_until)
            VALUES (
                report_waha_server_failure.server_id,
                owner_id,
                pg_catalog.now(),
                pg_catalog.now(),
                1,
                pg_catalog.left(COALESCE(NULLIF(pg_catalog.btrim(reason), ''), 'failure reported without a reason'), 1000),
                pg_catalog.now() + interval '30 seconds'
            )
            ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
            SET last_checked_at = excluded.last_checked_at,
                last_failure_at = excluded.last_failure_at,
                consecutive_failures = health.consecutive_failures + 1,
                last_error = excluded.last_error,
                -- 30 s * 2^(failures - 1), capped at 10 minutes; never shortened.
                cooldown_until = GREATEST(
                    health.cooldown_until,
                    pg_catalog.now() + LEAST(
                        pg_catalog.make_interval(secs => 30 * 2 ^ LEAST(health.consecutive_failures, 10)),
                        interval '10 minutes'))
            RETURNING health.* INTO recorded;
            RETURN recorded;
        END
        $$;
        COMMENT ON FUNCTION public.report_waha_server_failure(uuid, text) IS
            'Records a failure of a WAHA server (reason in plain words): one more consecutive failure, cooldown 30 s doubling to 10 minutes. Row security applies; SQLSTATE WAH20 for a server that is not visible.';

        CREATE FUNCTION public.report_waha_server_success(server_id uuid)
            RETURNS public.waha_server_health
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            owner_id uuid;
            recorded public.waha_server_health;
        BEGIN
            SELECT server.user_id INTO owner_id
            FROM public.waha_servers AS server
            WHERE server.id = report_waha_server_success.server_id;
            IF owner_id IS NULL THEN
                RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_success.server_id
                    USING ERRCODE = 'WAH20',
                          HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
            END IF;

            INSERT INTO public.waha_server_health AS health
                (server_id, user_id, last_checked_at, last_success_at, consecutive_failures, cooldown_until)
            VALUES (report_waha_server_success.server_id, owner_id, pg_catalog.now(), pg_catalog.now(), 0, NULL)
            ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
            SET last_checked_at = excluded.last_checked_at,
                last_success_at = excluded.last_success_at,
                consecutive_failures = 0,
                cooldown_until = NULL
            RETURNING health.* INTO recorded;
            RETURN recorded;
        END
        $$;
        COMMENT ON FUNCTION public.report_waha_server_success(uuid) IS
            'Records a success of a WAHA server: failures back to 0, cooldown cleared. Row security applies; SQLSTATE WAH20 for a server that is not visible.';

        CREATE OR REPLACE FUNCTION public.get_available_waha_server(
            user_uuid uuid,
            excluded_server_ids uuid[] DEFAULT '{}'
        )
            RETURNS SETOF public.waha_servers
            LANGUAGE plpgsql
            STABLE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        BEGIN
            -- The servers not cooling down (no health row, or a cooldown that has
            -- ended), in the seed's order. The user's cooling servers are read once
            -- (a few rows of the partial index). Only the best priority level that
            -- still has a candidate is sorted by load: the first index entry of
            -- (user_id, prioridade DESC) that qualifies gives that level, so a user
            -- with many servers sorts one level, not all of them, whatever plan
            -- plpgsql has cached.
            RETURN QUERY
            WITH cooling AS MATERIALIZED (
                SELECT health.server_id
                FROM public.waha_server_health AS health
                WHERE health.user_id = user_uuid
                  AND health.cooldown_until > pg_catalog.now()
            )
            SELECT server.*
            FROM public.waha_servers AS server
            WHERE server.user_id = user_uuid
              AND server.ativo
              AND server.prioridade = (
                  SELECT top.prioridade
                  FROM public.waha_servers AS top
                  WHERE top.user_id = user_uuid
                    AND top.ativo
                    AND top.sessions_ativas < top.max_sessions
                    AND NOT COALESCE(top.id = ANY (excluded_server_ids), false)
                    AND top.id NOT IN (SELECT cooling.server_id FROM cooling)
                  ORDER BY top.prioridade DESC
                  LIMIT 1)
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
              -- server_id is the primary key, never NULL, so NOT IN is a plain anti-join.
              AND server.id NOT IN (SELECT cooling.server_id FROM cooling)
            ORDER BY server.sessions_ativas::numeric(40, 30) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
            IF FOUND THEN
                RETURN;
            END IF;

            -- Every candidate is cooling down: still offer one, the one whose
            -- cooldown ends first (it failed least recently), rather than nothing.
            -- A STABLE function sees one snapshot, so both queries agree.
            RETURN QUERY
            SELECT server.*
            FROM public.waha_server_health AS health
            JOIN public.waha_servers AS server ON server.id = health.server_id
            WHERE health.user_id = user_uuid
              AND health.cooldown_until > pg_catalog.now()
              AND server.user_id = user_uuid
              AND server.ativo
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
            ORDER BY health.cooldown_until ASC,
                     server.prioridade DESC,
                     server.sessions_ativas::numeric(40, 30) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
        END
        $$;
        COMMENT ON FUNCTION public.get_available_waha_server(uuid, uuid[]) IS
            'The best WAHA server of a user for a new session: among active servers with free capacity and not excluded, those not cooling down first (highest prioridade, then lowest load), then those cooling down, earliest cooldown end first. Zero rows when none qualifies.';;

REVOKE ALL ON TABLE public.waha_server_health FROM PUBLIC, authenticated, service_role;
        GRANT SELECT, INSERT, UPDATE ON TABLE public.waha_server_health TO authenticated;
        GRANT ALL ON TABLE public.waha_server_health TO service_role;

        REVOKE ALL ON FUNCTION public.report_waha_server_failure(uuid, text) FROM PUBLIC, authenticated, service_role;
        REVOKE ALL ON FUNCTION public.report_waha_server_success(uuid) FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.report_waha_server_failure(uuid, text) TO authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.report_waha_server_success(uuid) TO authenticated, service_role;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON TABLE public.waha_server_health FROM anon;
                REVOKE ALL ON FUNCTION public.report_waha_server_failure(uuid, text) FROM anon;
                REVOKE ALL ON FUNCTION public.report_waha_server_success(uuid) FROM anon;
            END IF;
        END
        $$;;

UPDATE alembic_version SET version_num='0007' WHERE alembic_version.version_num = '0006';

-- Running upgrade 0007 -> 0008

CREATE OR REPLACE FUNCTION public.get_available_waha_server(
            user_uuid uuid,
            excluded_server_ids uuid[] DEFAULT '{}'
        )
            RETURNS SETOF public.waha_servers
            LANGUAGE plpgsql
            STABLE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        BEGIN
            -- The servers not cooling down (no health row, or a cooldown that has
            -- ended), in the seed's order, one priority level at a time from the
            -- top (prioridade is 0..10). Each level is an index look-up of
            -- (user_id, prioridade) whose candidates are sorted by load, and the
            -- first level with a candidate ends the query, under a generic plan as
            -- under a custom one: the levels are sorted by their own ORDER BY, so
            -- the nested loop returns the best level first and needs no sort. A
            -- level sorts ids and keys only; the chosen row is read once, by id.
            -- The user's cooling servers are read once (a few rows of a partial
            -- index).
            --
            -- Load, sessions_ativas / max_sessions, is compared exactly and in
            -- int8 (numeric costs more): as floor(sessions_ativas * 2^62 /
            -- max_sessions), written in two 31-bit digits. Two different ratios of
            -- integers below 2^31 differ by more than 2^-62, so they never share
            -- a key, and equal ratios always do.
            RETURN QUERY
            WITH cooling AS MATERIALIZED (
                SELECT health.server_id
                FROM public.waha_server_health AS health
                WHERE health.user_id = user_uuid
                  AND health.cooldown_until > pg_catalog.now()
            )
            SELECT chosen.*
            FROM (SELECT level
                  FROM pg_catalog.generate_series(10, 0, -1) AS level
                  ORDER BY level DESC) AS levels
            CROSS JOIN LATERAL (
                SELECT server.id
                FROM public.waha_servers AS server
                WHERE server.user_id = user_uuid
                  AND server.ativo
                  AND server.prioridade = levels.level
                  AND server.sessions_ativas < server.max_sessions
                  AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
                  -- server_id is the primary key, never NULL, so NOT IN is a plain anti-join.
                  AND server.id NOT IN (SELECT cooling.server_id FROM cooling)
                ORDER BY (server.sessions_ativas::int8 << 31) / server.max_sessions ASC,
                         (((server.sessions_ativas::int8 << 31) % server.max_sessions) << 31) / server.max_sessions ASC,
                         server.max_sessions - server.sessions_ativas DESC,
                         server.created_at ASC,
                         server.id ASC
                LIMIT 1) AS best
            CROSS JOIN LATERAL (
                SELECT server.*
                FROM public.waha_servers AS server
                WHERE server.id = best.id
                LIMIT 1) AS chosen
            ORDER BY levels.level DESC
            LIMIT 1;
            IF FOUND THEN
                RETURN;
            END IF;

            -- Every candidate is cooling down: still offer one, the one whose
            -- cooldown ends first (it failed least recently), rather than nothing.
            -- A STABLE function sees one snapshot, so both queries agree.
            RETURN QUERY
            SELECT server.*
            FROM public.waha_server_health AS health
            JOIN public.waha_servers AS server ON server.id = health.server_id
            WHERE health.user_id = user_uuid
              AND health.cooldown_until > pg_catalog.now()
              AND server.user_id = user_uuid
              AND server.ativo
              AND server.sessions_ativas < server.max_sessions
              AND NOT COALESCE(server.id = ANY (excluded_server_ids), false)
            ORDER BY health.cooldown_until ASC,
                     server.prioridade DESC,
                     (server.sessions_ativas::int8 << 31) / server.max_sessions ASC,
                     (((server.sessions_ativas::int8 << 31) % server.max_sessions) << 31) / server.max_sessions ASC,
                     server.max_sessions - server.sessions_ativas DESC,
                     server.created_at ASC,
                     server.id ASC
            LIMIT 1;
        END
        $$;;

UPDATE alembic_version SET version_num='0008' WHERE alembic_version.version_num = '0007';

-- Running upgrade 0008 -> 0009

ALTER TABLE public.waha_server_health
            ADD COLUMN waha_version text,
            ADD COLUMN waha_engine text,
            ADD COLUMN waha_tier text,
            ADD COLUMN identified_at timestamptz,
            ADD CONSTRAINT waha_server_health_identified_at_with_version_check
                CHECK ((waha_version IS NULL) = (identified_at IS NULL));
        COMMENT ON COLUMN public.waha_server_health.waha_version IS
            'The WAHA version the server last reported at /api/server/version; NULL until a probe got an answer.';
        COMMENT ON COLUMN public.waha_server_health.waha_engine IS
            'The engine the server last reported (WEBJS, NOWEB, GOWS...).';
        COMMENT ON COLUMN public.waha_server_health.waha_tier IS
            'The tier the server last reported: CORE runs a single session, PLUS many.';
        COMMENT ON COLUMN public.waha_server_health.identified_at IS
            'When the server last reported its version, engine and tier.';

        CREATE FUNCTION public.report_waha_server_version(
            server_id uuid,
            version text,
            engine text DEFAULT NULL,
            tier text DEFAULT NULL
        )
            RETURNS public.waha_server_health
            LANGUAGE plpgsql
            VOLATILE
            SECURITY INVOKER
            SET search_path = ''
        AS $$
        DECLARE
            owner_id uuid;
            reported_version text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_version.version), ''), 100);
            reported_engine text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_version.engine), ''), 100);
            reported_tier text := pg_catalog.left(NULLIF(pg_catalog.btrim(report_waha_server_version.tier), ''), 100);
            recorded public.waha_server_health;
        BEGIN
            IF reported_version IS NULL THEN
                RAISE EXCEPTION 'a WAHA version is required'
                    USING ERRCODE = '22023',
                          HINT = 'Report what GET /api/server/version answered: its version, engine and tier.';
            END IF;
            SELECT server.user_id INTO owner_id
            FROM public.waha_servers AS server
            WHERE server.id = report_waha_server_version.server_id;
            IF owner_id IS NULL THEN
                RAISE EXCEPTION 'no WAHA server with id %', report_waha_server_version.server_id
                    USING ERRCODE = 'WAH20',
                          HINT = 'The server was deleted, or belongs to another user: report only on your own servers.';
            END IF;

            INSERT INTO public.waha_server_health AS health
                (server_id, user_id, waha_version, waha_engine, waha_tier, identified_at)
            VALUES (report_waha_server_version.server_id, owner_id,
                    reported_version, reported_engine, reported_tier, pg_catalog.now())
            ON CONFLICT ON CONSTRAINT waha_server_health_pkey DO UPDATE
            SET waha_version = excluded.waha_version,
                waha_engine = excluded.waha_engine,
                waha_tier = excluded.waha_tier,
                identified_at = excluded.identified_at
            RETURNING health.* INTO recorded;
            RETURN recorded;
        END
        $$;
        COMMENT ON FUNCTION public.report_waha_server_version(uuid, text, text, text) IS
            'Records what a WAHA server reported at /api/server/version (version, engine, tier); the health counters are left alone. Row security applies; SQLSTATE WAH20 for a server that is not visible, 22023 for a blank version.';;

REVOKE ALL ON FUNCTION public.report_waha_server_version(uuid, text, text, text) FROM PUBLIC, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION public.report_waha_server_version(uuid, text, text, text) TO authenticated, service_role;
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
                REVOKE ALL ON FUNCTION public.report_waha_server_version(uuid, text, text, text) FROM anon;
            END IF;
        END
        $$;;

UPDATE alembic_version SET version_num='0009' WHERE alembic_version.version_num = '0008';

-- Running upgrade 0009 -> 0010

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
    'The user''s session of that name: the occupying one when there is one (no slot taken; SQLSTATE WAH12 when it sits on an excluded server), else started on the server get_available_waha_server picks, reusing a stopped row of that name there, taking one slot, race-free. SQLSTATE WAH10 when no server has a free slot.';;

UPDATE alembic_version SET version_num='0010' WHERE alembic_version.version_num = '0009';

-- Running upgrade 0010 -> 0011

DO $$
DECLARE
    missing text[];
BEGIN
    SELECT pg_catalog.array_agg(made.description ORDER BY made.description) INTO missing
    FROM (VALUES
        ('function public.waha_normalized_url(text)', pg_catalog.to_regprocedure('public.waha_normalized_url(text)')::pg_catalog.oid),
        ('index public.waha_servers_user_id_normalized_api_url_key',
         pg_catalog.to_regclass('public.waha_servers_user_id_normalized_api_url_key')::pg_catalog.oid),
        ('index public.waha_sessions_user_id_session_name_occupying_key',
         pg_catalog.to_regclass('public.waha_sessions_user_id_session_name_occupying_key')::pg_catalog.oid)
    ) AS made(description, found)
    WHERE made.found IS NULL;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'alembic_version says revision 0010, but what revision 0010 makes is missing: %',
                pg_catalog.array_to_string(missing, ', ')
            USING ERRCODE = 'WAH06',
                  DETAIL = 'Nothing was applied. Until this revision, the API roles could write alembic_version: a value written there '
                           'makes later revisions believe earlier ones ran. Record the revision this database really holds '
                           '(UPDATE public.alembic_version SET version_num = ''0009''; when revision 0010 never ran; after a '
                           '`supabase db push`, also `supabase migration repair --status reverted 20261202000010`, so the CLI '
                           'pushes file 0010 again), then upgrade or push again. If those objects were dropped by hand, recreate '
                           'them as revision 0010 makes them.';
    END IF;
END
$$;

DO $$
DECLARE
    refused text[];
    fixes text[];
BEGIN
    SELECT pg_catalog.array_agg(pg_catalog.format('server %s (%L) of user %s: %s', checked.id, checked.nome, checked.user_id,
                                                  pg_catalog.array_to_string(checked.problems, '; '))
                                ORDER BY checked.user_id::text, checked.id::text),
           pg_catalog.array_agg(pg_catalog.format('UPDATE public.waha_servers SET %s WHERE id = %L;',
                                                  pg_catalog.array_to_string(checked.assignments, ', '), checked.id)
                                ORDER BY checked.user_id::text, checked.id::text)
    INTO refused, fixes
    FROM (
        SELECT server.id, server.nome, server.user_id,
               pg_catalog.array_remove(ARRAY[
                   CASE WHEN server.api_url ~ '^[^/?#]*//[^/?#]*@' THEN 'api_url holds a user or password before the host' END,
                   CASE WHEN server.api_url ~ '[?]' THEN 'api_url has a query (?...)' END,
                   CASE WHEN server.api_url ~ '#' THEN 'api_url has a fragment (#...)' END,
                   CASE WHEN server.webhook_url ~ '^[^/?#]*//[^/?#]*@' THEN 'webhook_url holds a user or password before the host' END,
                   CASE WHEN server.webhook_url ~ '[?]' THEN 'webhook_url has a query (?...)' END,
                   CASE WHEN server.webhook_url ~ '#' THEN 'webhook_url has a fragment (#...)' END,
                   CASE WHEN server.timeout NOT BETWEEN 1 AND 120
                        THEN pg_catalog.format('timeout %s is not between 1 and 120 seconds', server.timeout) END,
                   CASE WHEN server.retry_attempts NOT BETWEEN 0 AND 10
                        THEN pg_catalog.format('retry_attempts %s is not between 0 and 10', server.retry_attempts) END
               ], NULL) AS problems,
               pg_catalog.array_remove(ARRAY[
                   CASE WHEN server.api_url ~ '^[^/?#]*//[^/?#]*@|[?#]'
                        THEN pg_catalog.format('api_url = %L', pg_catalog.regexp_replace(
                                 pg_catalog.regexp_replace(server.api_url, '^([^/?#]*//)[^/?#]*@', '\1'), '[?#].*$', '')) END,
                   CASE WHEN server.webhook_url ~ '^[^/?#]*//[^/?#]*@|[?#]'
                        THEN pg_catalog.format('webhook_url = %L', pg_catalog.regexp_replace(
                                 pg_catalog.regexp_replace(server.webhook_url, '^([^/?#]*//)[^/?#]*@', '\1'), '[?#].*$', '')) END,
                   CASE WHEN server.timeout NOT BETWEEN 1 AND 120
                        THEN pg_catalog.format('timeout = %s', LEAST(GREATEST(server.timeout, 1), 120)) END,
                   CASE WHEN server.retry_attempts NOT BETWEEN 0 AND 10
                        THEN pg_catalog.format('retry_attempts = %s', LEAST(GREATEST(server.retry_attempts, 0), 10)) END
               ], NULL) AS assignments
        FROM public.waha_servers AS server
    ) AS checked
    WHERE pg_catalog.cardinality(checked.problems) > 0;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'waha_servers holds % server(s) that the new rules refuse (a URL without user, password, query or fragment; '
                        'timeout 1 to 120 seconds; retry_attempts 0 to 10):%',
                pg_catalog.cardinality(refused), E'\n  - ' || pg_catalog.array_to_string(refused, E'\n  - ')
            USING ERRCODE = 'WAH08',
                  DETAIL = 'Fix each server, then run the upgrade again (each URL loses what the rules refuse, each number goes to '
                           'the nearest bound):' || E'\n  ' || pg_catalog.array_to_string(fixes, E'\n  '),
                  HINT = 'WAHA''s key belongs in api_key, a webhook''s in webhook_secret, not in a URL. If an UPDATE fails because '
                         'the user has that URL already, keep one of the two servers (waha-db servers remove ID).';
    END IF;
END
$$;

REVOKE ALL ON TABLE public.alembic_version FROM PUBLIC, authenticated, service_role;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON TABLE public.alembic_version FROM anon;
    END IF;
END
$$;
ALTER TABLE public.alembic_version ENABLE ROW LEVEL SECURITY;
COMMENT ON TABLE public.alembic_version IS
    'The waha-db (Alembic) revision of this database. Not for the API: no grant to its roles, row security on and no policy.';

ALTER TABLE public.waha_servers
    ADD CONSTRAINT waha_servers_api_url_without_userinfo_check CHECK (api_url !~ '^[^/?#]*//[^/?#]*@'),
    ADD CONSTRAINT waha_servers_api_url_without_query_check CHECK (api_url !~ '[?]'),
    ADD CONSTRAINT waha_servers_api_url_without_fragment_check CHECK (api_url !~ '#'),
    ADD CONSTRAINT waha_servers_webhook_url_without_userinfo_check CHECK (webhook_url !~ '^[^/?#]*//[^/?#]*@'),
    ADD CONSTRAINT waha_servers_webhook_url_without_query_check CHECK (webhook_url !~ '[?]'),
    ADD CONSTRAINT waha_servers_webhook_url_without_fragment_check CHECK (webhook_url !~ '#'),
    ADD CONSTRAINT waha_servers_timeout_at_most_120_check CHECK (timeout <= 120),
    ADD CONSTRAINT waha_servers_retry_attempts_at_most_10_check CHECK (retry_attempts <= 10);

CREATE FUNCTION public.waha_check_server_row()
    RETURNS trigger
    LANGUAGE plpgsql
    VOLATILE
    SECURITY INVOKER
    SET search_path = ''
AS $function$
DECLARE
    missing text;
    rule text;
    words text;
    fix text;
BEGIN
    -- NOT NULL first, in column order, as PostgreSQL checks them.
    missing := CASE
        WHEN NEW.id IS NULL THEN 'id'
        WHEN NEW.user_id IS NULL THEN 'user_id'
        WHEN NEW.nome IS NULL THEN 'nome'
        WHEN NEW.api_url IS NULL THEN 'api_url'
        WHEN NEW.ativo IS NULL THEN 'ativo'
        WHEN NEW.timeout IS NULL THEN 'timeout'
        WHEN NEW.retry_attempts IS NULL THEN 'retry_attempts'
        WHEN NEW.rate_limit IS NULL THEN 'rate_limit'
        WHEN NEW.prioridade IS NULL THEN 'prioridade'
        WHEN NEW.max_sessions IS NULL THEN 'max_sessions'
        WHEN NEW.sessions_ativas IS NULL THEN 'sessions_ativas'
        WHEN NEW.created_at IS NULL THEN 'created_at'
        WHEN NEW.updated_at IS NULL THEN 'updated_at'
    END;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'null value in column "%" of relation "waha_servers" violates not-null constraint', missing
            USING ERRCODE = 'not_null_violation', SCHEMA = 'public', TABLE = 'waha_servers', COLUMN = missing,
                  DETAIL = pg_catalog.format('%s is required (the row''s values are not shown).', missing);
    END IF;
    -- Each CHECK's own expression: refused where it is false (a NULL passes, as in a CHECK).
    IF NOT (NEW.nome ~ '\S') THEN
        rule := 'waha_servers_nome_not_blank_check';
        words := 'nome (the server''s name) must not be blank.';
    ELSIF NOT (NEW.api_url !~ '^[^/?#]*//[^/?#]*@') THEN
        rule := 'waha_servers_api_url_without_userinfo_check';
        words := 'api_url must not hold a user or password before the host (user@ or user:password@).';
        fix := 'Remove them from the URL; WAHA''s key belongs in api_key.';
    ELSIF NOT (NEW.api_url !~ '[?]') THEN
        rule := 'waha_servers_api_url_without_query_check';
        words := 'api_url must not have a query (?...).';
        fix := 'Remove everything from the ? on: WAHA''s API paths are appended to the path of the URL.';
    ELSIF NOT (NEW.api_url !~ '#') THEN
        rule := 'waha_servers_api_url_without_fragment_check';
        words := 'api_url must not have a fragment (#...).';
        fix := 'Remove everything from the # on.';
    ELSIF NOT (NEW.api_url ~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$') THEN
        rule := 'waha_servers_api_url_http_check';
        words := 'api_url must be an http:// or https:// URL with a host and no spaces, e.g. https://waha1.example.com.';
    ELSIF NOT (NEW.webhook_url !~ '^[^/?#]*//[^/?#]*@') THEN
        rule := 'waha_servers_webhook_url_without_userinfo_check';
        words := 'webhook_url must not hold a user or password before the host (user@ or user:password@).';
        fix := 'Remove them from the URL; the webhook''s secret belongs in webhook_secret.';
    ELSIF NOT (NEW.webhook_url !~ '[?]') THEN
        rule := 'waha_servers_webhook_url_without_query_check';
        words := 'webhook_url must not have a query (?...).';
        fix := 'Remove everything from the ? on; the webhook''s secret belongs in webhook_secret.';
    ELSIF NOT (NEW.webhook_url !~ '#') THEN
        rule := 'waha_servers_webhook_url_without_fragment_check';
        words := 'webhook_url must not have a fragment (#...).';
        fix := 'Remove everything from the # on.';
    ELSIF NOT (NEW.webhook_url ~* '^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$') THEN
        rule := 'waha_servers_webhook_url_http_check';
        words := 'webhook_url must be an http:// or https:// URL with a host and no spaces, e.g. https://app.example.com/webhook.';
    ELSIF NOT (NEW.timeout > 0) THEN
        rule := 'waha_servers_timeout_positive_check';
        words := 'timeout must be between 1 and 120 seconds.';
    ELSIF NOT (NEW.timeout <= 120) THEN
        rule := 'waha_servers_timeout_at_most_120_check';
        words := 'timeout must be between 1 and 120 seconds.';
    ELSIF NOT (NEW.retry_attempts >= 0) THEN
        rule := 'waha_servers_retry_attempts_not_negative_check';
        words := 'retry_attempts must be between 0 and 10.';
    ELSIF NOT (NEW.retry_attempts <= 10) THEN
        rule := 'waha_servers_retry_attempts_at_most_10_check';
        words := 'retry_attempts must be between 0 and 10.';
    ELSIF NOT (NEW.rate_limit > 0) THEN
        rule := 'waha_servers_rate_limit_positive_check';
        words := 'rate_limit must be greater than 0 (requests per minute).';
    ELSIF NOT (NEW.prioridade BETWEEN 0 AND 10) THEN
        rule := 'waha_servers_prioridade_range_check';
        words := 'prioridade must be between 0 and 10.';
    ELSIF NOT (NEW.max_sessions > 0) THEN
        rule := 'waha_servers_max_sessions_positive_check';
        words := 'max_sessions must be greater than 0.';
    ELSIF NOT (NEW.sessions_ativas >= 0) THEN
        rule := 'waha_servers_sessions_ativas_not_negative_check';
        words := 'sessions_ativas cannot be negative.';
    END IF;
    IF rule IS NOT NULL AND fix IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "waha_servers" violates check constraint "%"', rule
            USING ERRCODE = 'check_violation', SCHEMA = 'public', TABLE = 'waha_servers', CONSTRAINT = rule,
                  DETAIL = words, HINT = fix;
    ELSIF rule IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "waha_servers" violates check constraint "%"', rule
            USING ERRCODE = 'check_violation', SCHEMA = 'public', TABLE = 'waha_servers', CONSTRAINT = rule,
                  DETAIL = words;
    END IF;
    RETURN NEW;
END
$function$;
COMMENT ON FUNCTION public.waha_check_server_row() IS
    'Trigger: refuses a waha_servers row that breaks a NOT NULL or CHECK rule before PostgreSQL would, with the rule in words instead of the row''s values (which hold api_key and webhook_secret) in the error and the server''s log.';

CREATE FUNCTION public.waha_check_session_row()
    RETURNS trigger
    LANGUAGE plpgsql
    VOLATILE
    SECURITY INVOKER
    SET search_path = ''
AS $function$
DECLARE
    missing text;
BEGIN
    missing := CASE
        WHEN NEW.id IS NULL THEN 'id'
        WHEN NEW.user_id IS NULL THEN 'user_id'
        WHEN NEW.waha_server_id IS NULL THEN 'waha_server_id'
        WHEN NEW.session_name IS NULL THEN 'session_name'
        WHEN NEW.status IS NULL THEN 'status'
        WHEN NEW.created_at IS NULL THEN 'created_at'
        WHEN NEW.updated_at IS NULL THEN 'updated_at'
    END;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'null value in column "%" of relation "waha_sessions" violates not-null constraint', missing
            USING ERRCODE = 'not_null_violation', SCHEMA = 'public', TABLE = 'waha_sessions', COLUMN = missing,
                  DETAIL = pg_catalog.format('%s is required (the row''s values are not shown).', missing);
    END IF;
    IF NOT (NEW.session_name ~ '^[A-Za-z0-9_-]{1,54}$') THEN
        RAISE EXCEPTION 'new row for relation "waha_sessions" violates check constraint "waha_sessions_session_name_waha_rule_check"'
            USING ERRCODE = 'check_violation', SCHEMA = 'public', TABLE = 'waha_sessions',
                  CONSTRAINT = 'waha_sessions_session_name_waha_rule_check',
                  DETAIL = 'session_name must be 1 to 54 letters, digits, _ or - (WAHA''s rule).';
    END IF;
    RETURN NEW;
END
$function$;
COMMENT ON FUNCTION public.waha_check_session_row() IS
    'Trigger: refuses a waha_sessions row that breaks a NOT NULL or CHECK rule before PostgreSQL would, with the rule in words instead of the row''s values (which hold the phone number, profile name and QR code) in the error and the server''s log.';

REVOKE ALL ON FUNCTION public.waha_check_server_row(), public.waha_check_session_row() FROM PUBLIC, authenticated, service_role;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON FUNCTION public.waha_check_server_row(), public.waha_check_session_row() FROM anon;
    END IF;
END
$$;

-- After waha_*_set_updated_at (BEFORE triggers fire in name order): they check the row as it will be stored.
CREATE TRIGGER waha_servers_validate_row
    BEFORE INSERT OR UPDATE ON public.waha_servers
    FOR EACH ROW EXECUTE FUNCTION public.waha_check_server_row();
CREATE TRIGGER waha_sessions_validate_row
    BEFORE INSERT OR UPDATE ON public.waha_sessions
    FOR EACH ROW EXECUTE FUNCTION public.waha_check_session_row();;

UPDATE alembic_version SET version_num='0011' WHERE alembic_version.version_num = '0010';

-- Running upgrade 0011 -> 0012

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
$$;;

UPDATE alembic_version SET version_num='0012' WHERE alembic_version.version_num = '0011';

COMMIT;

