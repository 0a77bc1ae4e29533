"""The checks before the legacy waha_config is converted: one SQL block, run before the revisions.

The conversion revision (0005) is frozen, and on its own it drops values silently
when upgraded to again after a downgrade: a waha_config whose row was converted
before keeps the server as it is (`ON CONFLICT DO NOTHING`) whatever the DBA changed
since, and ignores an owner who differs. It also calls a bigint out of range "not a
whole number" and hints `SET api_url` whatever is wrong. So every upgrade whose steps
include the conversion runs `PREFLIGHT_SQL` first (migrations/env.py, online and in
the offline script alike), and `waha-db upgrade`'s plan and `waha-db status` run the
very same block read-only, inside a savepoint, to say before anything is asked what
the upgrade will refuse. It never changes data. In order, it refuses:

- WAH02: an owner that is not a UUID;
- WAH03: legacy values V2.1 refuses, each with the statement that fixes it (a
  number out of range is "out of range", not "not a whole number");
- WAH07: a row converted before whose server now differs from it, field by field
  (secrets are named, never shown), or whose server belongs to another user than the
  owner given, with the two statements to choose from: keep waha_config's values or
  keep the server's;
- WAH01: a row to convert and no owner. When every row was converted before into
  servers of one user, that user is the owner (`waha.config_owner` is set for the
  transaction), so the upgrade after a downgrade needs no `--owner`;
- WAH02: an owner who is not in auth.users.

The block reads the legacy rows as 0005 does (whichever columns the variant has,
every value as text before any cast), so it judges exactly what 0005 would convert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa

from waha_db.database import driver_error
from waha_db.lifecycle import revisions
from waha_db.lifecycle.model import HTTP_URL

REFUSALS = ("WAH01", "WAH02", "WAH03", "WAH07")


def revisions_below_conversion() -> list[str]:
    """The revisions a database can be at for an upgrade to head to run the conversion."""
    from waha_db.lifecycle.migrate import conversion_revision

    return revisions.between(revisions.previous(conversion_revision()), None)


def runs_the_conversion(destination: str | tuple[str, ...] | None) -> bool:
    """Whether an upgrade to `destination` ("head", "0006", "0004:head"...) passes the conversion revision.

    Alembic gives the destination of an upgrade to "heads" as a tuple of revision ids
    (pytest-alembic's upgrades are to "heads"): the conversion runs when it does on the
    way to any of them.
    """
    if isinstance(destination, tuple):
        return any(runs_the_conversion(each) for each in destination)
    if not destination:
        return False
    target = destination.split(":")[-1]
    if target in ("head", "heads"):
        return True
    try:
        resolved = revisions.resolve(target)
    except revisions.UnknownRevision:
        return True  # Alembic will refuse it; the check costs nothing
    return resolved is not None and resolved not in revisions_below_conversion()


def preflight_sql() -> str:
    """The DO block (see the module doc); raises with SQLSTATE WAH01/02/03/07, or sets the owner, or does nothing."""
    below = ", ".join(f"'{revision}'" for revision in revisions_below_conversion())
    return (
        _PREFLIGHT.replace("@BELOW@", below)
        .replace("@HTTP_URL@", HTTP_URL)
        .replace("@URL_EXTRAS@", URL_EXTRAS)
        .replace("@CLEANED(legacy.api_url)@", _cleaned("legacy.api_url"))
        .replace("@CLEANED(legacy.webhook_url)@", _cleaned("legacy.webhook_url"))
    )


# What revision 0011 refuses in a URL: a user or password before the host, a query, a fragment.
URL_EXTRAS = r"'^[^/?#]*//[^/?#]*@|[?#]'"


def _cleaned(url: str) -> str:
    """SQL of `url` without what URL_EXTRAS finds, as revision 0011's fixes write it."""
    return f"pg_catalog.regexp_replace(pg_catalog.regexp_replace({url}, '^([^/?#]*//)[^/?#]*@', '\\1'), '[?#].*$', '')"


_PREFLIGHT = r"""
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
        IF EXISTS (SELECT FROM public.alembic_version WHERE version_num NOT IN (@BELOW@)) THEN
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
        IF legacy.api_url ~ @URL_EXTRAS@ THEN
            problems := problems || pg_catalog.format('waha_config id=%s: api_url holds a user or password before the host, a query or a'
                                                      ' fragment (not shown), which V2.1 refuses', legacy.legacy_id);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET api_url = %L WHERE %s;', @CLEANED(legacy.api_url)@, row_filter);
        ELSIF legacy.api_url !~* @HTTP_URL@ THEN
            problems := problems || pg_catalog.format('waha_config id=%s: api_url %L is not an http:// or https:// URL',
                legacy.legacy_id, legacy.api_url);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET api_url = %L WHERE %s;',
                CASE WHEN 'https://' || legacy.api_url ~* @HTTP_URL@ THEN 'https://' || legacy.api_url ELSE 'https://waha.example.com' END,
                    row_filter);
        END IF;
        IF legacy.webhook_url ~ @URL_EXTRAS@ THEN
            problems := problems || pg_catalog.format('waha_config id=%s: webhook_url holds a user or password before the host, a query'
                                                      ' or a fragment (not shown), which V2.1 refuses', legacy.legacy_id);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET webhook_url = %L WHERE %s;', @CLEANED(legacy.webhook_url)@,
                row_filter);
        ELSIF legacy.webhook_url !~* @HTTP_URL@ THEN
            problems := problems || pg_catalog.format('waha_config id=%s: webhook_url %L is not an http:// or https:// URL (set it to NULL if'
                                                      ' there is no webhook)', legacy.legacy_id, legacy.webhook_url);
            fixes := fixes || pg_catalog.format('UPDATE public.waha_config SET webhook_url = %L WHERE %s;',
                CASE WHEN 'https://' || legacy.webhook_url ~* @HTTP_URL@ THEN 'https://' || legacy.webhook_url END, row_filter);
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
$waha_preflight$
"""


@dataclass(frozen=True)
class Preflight:
    """What the checks say of an upgrade that converts: who will own the server, or the refusal."""

    owner: uuid.UUID | None  # given, or taken from the server converted before
    refusal: str | None  # the message, its detail and hint, as the upgrade would fail; None when it would not


def check(connection: sa.Connection, owner: uuid.UUID | None) -> Preflight:
    """Run PREFLIGHT_SQL read-only, in a savepoint rolled back whatever happens."""
    savepoint = connection.begin_nested()
    try:
        if owner is not None:
            connection.exec_driver_sql(f"SET LOCAL waha.config_owner = '{owner}'")
        try:
            connection.exec_driver_sql(preflight_sql().replace("%", "%%"))
        except sa.exc.DBAPIError as error:
            original = driver_error(error)
            if not isinstance(original, psycopg.Error) or original.sqlstate not in REFUSALS:
                raise
            diagnostic = original.diag
            return Preflight(owner, "\n".join(filter(None, [diagnostic.message_primary, diagnostic.message_hint])))
        found = connection.exec_driver_sql("SELECT NULLIF(current_setting('waha.config_owner', true), '')").scalar()
        return Preflight(uuid.UUID(found) if found else None, None)
    finally:
        savepoint.rollback()
