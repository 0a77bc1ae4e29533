"""Roles, grants and row security, by Supabase's conventions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

- Roles authenticated and service_role are Supabase's; on plain PostgreSQL they
  are created NOLOGIN (service_role BYPASSRLS), with a notice. Without the right to
  create them the upgrade stops with an error naming them. Roles are never dropped.
- Supabase's default privileges give anon and authenticated everything on new
  objects in public: revoke all first, then grant exactly what is wanted.
  authenticated gets no TRUNCATE (it ignores row security).
- One policy per command for authenticated, matching user_id to the caller's id as
  Supabase's auth.uid() reads it (the `sub` of request.jwt.claims, or the legacy
  request.jwt.claim.sub), through public.waha_request_user_id() in the
  `(select ...)` form, evaluated once per query. Nothing is created in schema auth,
  so the same SQL runs on Supabase and on plain PostgreSQL.
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("waha_servers", "waha_sessions")


def upgrade() -> None:
    op.execute(
        """
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
            'The id of the requesting user, as Supabase''s auth.uid() reads it from the request''s JWT claims; NULL when there is none.';
        """
    )
    for table in TABLES:
        op.execute(
            f"""
            ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY;
            CREATE POLICY {table}_select_own ON public.{table}
                FOR SELECT TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY {table}_insert_own ON public.{table}
                FOR INSERT TO authenticated
                WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY {table}_update_own ON public.{table}
                FOR UPDATE TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()))
                WITH CHECK (user_id = (SELECT public.waha_request_user_id()));
            CREATE POLICY {table}_delete_own ON public.{table}
                FOR DELETE TO authenticated
                USING (user_id = (SELECT public.waha_request_user_id()));

            REVOKE ALL ON TABLE public.{table} FROM PUBLIC, authenticated, service_role;
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.{table} TO authenticated;
            GRANT ALL ON TABLE public.{table} TO service_role;
            """
        )
    op.execute(
        """
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
        REVOKE ALL ON FUNCTION public.waha_set_updated_at() FROM authenticated, service_role;
        """
    )


def downgrade() -> None:
    for table in TABLES:
        op.execute(
            f"""
            DROP POLICY {table}_select_own ON public.{table};
            DROP POLICY {table}_insert_own ON public.{table};
            DROP POLICY {table}_update_own ON public.{table};
            DROP POLICY {table}_delete_own ON public.{table};
            ALTER TABLE public.{table} DISABLE ROW LEVEL SECURITY;
            REVOKE ALL ON TABLE public.{table} FROM authenticated, service_role;
            """
        )
    op.execute(
        """
        REVOKE ALL ON FUNCTION public.get_available_waha_server(uuid, uuid[]) FROM authenticated, service_role;
        DROP FUNCTION public.waha_request_user_id();
        """
    )
