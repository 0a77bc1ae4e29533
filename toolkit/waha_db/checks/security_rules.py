"""The security rules the migrated schema must follow: Supabase's linter's, and ours (waha_db.checks.suite)."""

from __future__ import annotations

from waha_db.checks.suite_database import CheckFailed, Database, waha_tables

# splinter's rule, word for word in its comparison: int2vector's text form gives a
# 1-based array (a plain ::int2[] cast would start at 0).
UNINDEXED_FOREIGN_KEYS = """
    SELECT k.conrelid::pg_catalog.regclass::text || '.' || k.conname FROM pg_catalog.pg_constraint k
    WHERE k.contype = 'f' AND k.conrelid = ANY (%(qualified)s::pg_catalog.regclass[])
      AND NOT EXISTS (
          SELECT FROM pg_catalog.pg_index i
          WHERE i.indrelid = k.conrelid AND i.indisvalid
            AND k.conkey = (pg_catalog.string_to_array(i.indkey::text, ' ')::int2[])[1:pg_catalog.array_length(k.conkey, 1)]
      )
    ORDER BY 1
"""

SECURITY_QUERIES = {
    "row security is off": """
        SELECT c.relname FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relname = ANY (%(tables)s::text[]) AND NOT c.relrowsecurity
    """,
    "function without a fixed search_path": """
        SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::pg_catalog.regnamespace AND p.proname ~ 'waha'
          AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) AS setting WHERE setting LIKE 'search\\_path=%%')
    """,
    "anon or PUBLIC may use": """
        SELECT grantee || ' has ' || privilege_type || ' on ' || table_name
        FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name = ANY (%(tables)s::text[]) AND grantee IN ('anon', 'PUBLIC')
        UNION ALL
        SELECT grantee || ' may EXECUTE ' || routine_name
        FROM information_schema.role_routine_grants
        WHERE routine_schema = 'public' AND routine_name ~ 'waha' AND grantee IN ('anon', 'PUBLIC')
    """,
    "authenticated may TRUNCATE (it ignores row security)": """
        SELECT table_name FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name = ANY (%(tables)s::text[]) AND grantee = 'authenticated' AND privilege_type = 'TRUNCATE'
    """,
    # Supabase's linter (splinter 0001_unindexed_foreign_keys): a valid index whose
    # leading columns are the key's columns in the key's order; the same columns in
    # another order do not count.
    "foreign key without an index led by its columns in its order": UNINDEXED_FOREIGN_KEYS,
    "command without a policy for authenticated": """
        SELECT t || ': ' || cmd FROM pg_catalog.unnest(%(tables)s::text[]) AS t
        CROSS JOIN pg_catalog.unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS cmd
        WHERE NOT EXISTS (
            SELECT FROM pg_catalog.pg_policies p
            WHERE p.schemaname = 'public' AND p.tablename = t AND p.cmd IN (cmd, 'ALL') AND 'authenticated' = ANY (p.roles)
        )
    """,
    # Each side on its own: a wrapped USING must not hide a bare WITH CHECK.
    "policy that evaluates the caller per row, not once per query (write it as (select ...))": """
        SELECT p.tablename || '.' || p.policyname || ' ' || side.clause FROM pg_catalog.pg_policies AS p
        CROSS JOIN LATERAL (VALUES ('USING', p.qual), ('WITH CHECK', p.with_check)) AS side(clause, expression)
        WHERE p.schemaname = 'public' AND p.tablename = ANY (%(tables)s::text[])
          AND side.expression IS NOT NULL AND side.expression !~* '\\(\\s*select\\s'
        ORDER BY 1
    """,
    # Alembic's bookkeeping is no API table (revision 0011): a role of the app that may read or write
    # it could move the recorded revision, and make an upgrade fail or an exported file skip itself.
    "alembic_version open to the app's roles (no grant to PUBLIC, anon, authenticated, service_role; row security on)": """
        SELECT CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END
               || ' has ' || acl.privilege_type
        FROM pg_catalog.pg_class AS c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
        WHERE c.oid = pg_catalog.to_regclass('public.alembic_version')
          AND (acl.grantee = 0 OR pg_catalog.pg_get_userbyid(acl.grantee) IN ('anon', 'authenticated', 'service_role'))
        UNION ALL
        SELECT 'row security is off' FROM pg_catalog.pg_class AS c
        WHERE c.oid = pg_catalog.to_regclass('public.alembic_version') AND NOT c.relrowsecurity
    """,
    # splinter 0006_multiple_permissive_policies: permissive policies OR together, and
    # each one is evaluated for every row, so a role gets one per command.
    "more than one permissive policy for a role and command": """
        SELECT c.relname || ': ' || r.rolname || ' ' || action.cmd || ' ('
               || pg_catalog.string_agg(p.polname::text, ', ' ORDER BY p.polname) || ')'
        FROM pg_catalog.pg_policy AS p
        JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
        JOIN pg_catalog.pg_roles AS r ON p.polroles @> ARRAY[r.oid] OR p.polroles = ARRAY[0::oid]
        CROSS JOIN LATERAL pg_catalog.unnest(CASE p.polcmd
            WHEN 'r' THEN ARRAY['SELECT'] WHEN 'a' THEN ARRAY['INSERT'] WHEN 'w' THEN ARRAY['UPDATE']
            WHEN 'd' THEN ARRAY['DELETE'] ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END) AS action(cmd)
        WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relname = ANY (%(tables)s::text[])
          AND p.polpermissive
          AND r.rolname NOT LIKE 'pg\\_%%' AND r.rolname NOT LIKE 'supabase%%admin' AND NOT r.rolbypassrls
        GROUP BY c.relname, r.rolname, action.cmd
        HAVING pg_catalog.count(*) > 1
        ORDER BY 1
    """,
}


def check_security_rules(database: Database) -> list[str]:
    """Row security on, fixed search_path, nothing for anon and PUBLIC, no TRUNCATE for authenticated,
    a policy per command in the (select ...) form, every foreign key indexed (Supabase's linter's rules),
    and alembic_version out of the app's reach."""
    database.head()
    problems = []
    with database.engine.connect() as connection:
        tables = waha_tables(connection)
        parameters = {"tables": tables, "qualified": [f"public.{table}" for table in tables]}
        for rule, query in SECURITY_QUERIES.items():
            for (found,) in connection.exec_driver_sql(query, parameters):
                problems.append(f"{rule}: {found}")
        anon = connection.exec_driver_sql(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon')"
        ).scalar()
    if problems:
        raise CheckFailed(f"{len(problems)} security rules broken", problems)
    return [] if anon else ["role anon does not exist here (plain PostgreSQL): nothing to revoke from it"]
