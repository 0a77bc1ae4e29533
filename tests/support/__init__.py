"""What only the tests and the maintainer tools use, outside the wheel: a throwaway PgBouncer, the Supabase CLI runner."""
