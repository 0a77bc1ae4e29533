"""V2.1 tables: waha_servers and waha_sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Columns in the seed's order (the seed inserts positionally). Rules the seed's form
implies are enforced by the database: http(s) URLs, priority 0..10, positive
capacities, WAHA's session-name rule. A URL (api_url, webhook_url) is the whole
string `http://` or `https://`, a host (a name, an IPv4 address or a bracketed IPv6
one; no `user:password@`, which would leak credentials into every listing), an
optional port, then an optional path, query or fragment; no whitespace anywhere.
Revision 0005 checks legacy values with the very same expression. A session lives on a server of its own user:
the foreign key (waha_server_id, user_id) -> waha_servers (id, user_id) refuses a
session on a stranger's server (foreign-key checks ignore row security) and a change
of a server's owner while it has sessions. It is NO ACTION, not RESTRICT: deleting
a user in auth.users cascades through both tables, while deleting a server that
still has sessions is refused at the end of the statement.

The user foreign keys exist only where Supabase's auth.users exists.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
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
        $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE public.waha_sessions;
        DROP TABLE public.waha_servers;
        DROP FUNCTION public.waha_set_updated_at();
        """
    )
