"""waha-db: the WAHA multi-server schema V2.1 for PostgreSQL and Supabase, as Alembic migrations."""
