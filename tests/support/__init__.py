"""What only the tests and the maintainer tools use, outside the wheel: a throwaway PgBouncer, the Supabase CLI
runner, a server of one's own and a hot standby of it."""
