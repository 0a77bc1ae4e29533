"""alembic_version out of the API, server URLs without credentials, query or fragment, bounded timeouts, no row in the log.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Every signed-in user of the app writes public.waha_servers through the Data API, and
the admin's tools (monitor, servers test, sessions reconcile --live) act on those rows
with the operator's network. This revision makes the database refuse what a user's
row must never carry, and stops waha-db's own bookkeeping from being the app's.

- public.alembic_version is not an API table: no privilege for PUBLIC, anon,
  authenticated or service_role (none of the app's roles reads it; the table's
  owner runs the migrations), and row security enabled with no policy. Supabase's
  default privileges gave it to anon and authenticated, so a visitor could move the
  recorded revision (an upgrade then fails, or an exported file skips itself). The
  downgrade leaves it so: it never opens the table to the API again.
- api_url and webhook_url hold no user or password before the host, no query and no
  fragment (one CHECK each, so a refusal names what to remove). WAHA's API paths are
  appended to the URL's path: a query or a fragment there would ride along (or cut
  the path off) in every request of the admin's probes. Before, user:password@ was
  already refused by the http(s) CHECKs; now it has its own rule and words.
- timeout is 1 to 120 seconds and retry_attempts 0 to 10 (a CHECK of the upper bound
  each, beside revision 0002's lower ones): a user's numbers cannot hold a probe for
  hours.
- No row image reaches the server's log. PostgreSQL logs a CHECK or NOT NULL
  violation with `DETAIL: Failing row contains (...)`, which holds the api_key and
  webhook_secret, or a session's phone, profile and QR code. A BEFORE INSERT OR
  UPDATE trigger on each table checks the same rules first, with the same
  expressions, and raises PostgreSQL's own message with SQLSTATE 23514 (and the
  constraint's name) or 23502 (and the column's), and the rule in words as the
  DETAIL instead of the row. Named to fire after the updated_at trigger, so it sees
  the row as it will be stored. The CHECKs stay, as the last word.
- It first checks that revision 0010 ran: alembic_version said so, but until now the
  API roles could write it, and an exported file skips itself on what it says. When
  0010's function or unique indexes are missing, WAH06 says so and changes nothing.
- Rows that break the new rules stop the upgrade before anything changes: WAH08,
  each server listed by id, user and name (never its URL, which may hold a password
  or a token), with the UPDATE that fixes it (the URL without what the rules refuse,
  the number brought to the nearest bound).

The downgrade drops the triggers, their functions and the new CHECKs.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# `\:` is a colon that Alembic's text() leaves alone (a colon before a word is a bind parameter).
UPGRADE_SQL = r"""
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
        words := 'api_url must not hold a user or password before the host (user@ or user\:password@).';
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
        words := 'webhook_url must not hold a user or password before the host (user@ or user\:password@).';
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
    FOR EACH ROW EXECUTE FUNCTION public.waha_check_session_row();
"""

DOWNGRADE_SQL = r"""
DROP TRIGGER waha_sessions_validate_row ON public.waha_sessions;
DROP TRIGGER waha_servers_validate_row ON public.waha_servers;
DROP FUNCTION public.waha_check_session_row();
DROP FUNCTION public.waha_check_server_row();
ALTER TABLE public.waha_servers
    DROP CONSTRAINT waha_servers_api_url_without_userinfo_check,
    DROP CONSTRAINT waha_servers_api_url_without_query_check,
    DROP CONSTRAINT waha_servers_api_url_without_fragment_check,
    DROP CONSTRAINT waha_servers_webhook_url_without_userinfo_check,
    DROP CONSTRAINT waha_servers_webhook_url_without_query_check,
    DROP CONSTRAINT waha_servers_webhook_url_without_fragment_check,
    DROP CONSTRAINT waha_servers_timeout_at_most_120_check,
    DROP CONSTRAINT waha_servers_retry_attempts_at_most_10_check;
"""


def upgrade() -> None:
    op.execute(UPGRADE_SQL)


def downgrade() -> None:
    op.execute(DOWNGRADE_SQL)
