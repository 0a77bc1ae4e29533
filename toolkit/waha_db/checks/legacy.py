"""A legacy V1 database as the wild has it: the one copy of its DDL, for `verify` and the tests.

The singleton waha_config with every V1 column (as the seed's conversion SQL reads
it), its one row, and a table of the rest of the application that an upgrade must
leave alone. Variants found in the wild (missing columns, NULLs, extra columns)
are built by the tests from these parts.
"""

from __future__ import annotations

LEGACY_V1_TABLE = """
CREATE TABLE public.waha_config (
    id integer PRIMARY KEY CHECK (id = 1),
    api_url text, api_key text, webhook_url text, webhook_secret text,
    timeout integer, retry_attempts integer, rate_limit integer,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
"""
LEGACY_V1_ROW = """
INSERT INTO public.waha_config (id, api_url, api_key, webhook_url, webhook_secret, timeout, retry_attempts, rate_limit)
VALUES (1, 'https://waha.legacy.example', 'legacy-key', 'https://app.example/webhook', 'legacy-secret', 45, 5, 120);
"""
# The same row with a NULL where V2.1 has a default: the conversion must take the default.
LEGACY_V1_ROW_WITH_NULLS = """
INSERT INTO public.waha_config (id, api_url, api_key, webhook_url, webhook_secret, timeout, retry_attempts, rate_limit)
VALUES (1, 'https://waha.legacy.example', 'legacy-key', NULL, 'legacy-secret', 45, NULL, 120);
"""
LEGACY_APP_TABLE = """
CREATE TABLE public.campaigns (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO public.campaigns (name) VALUES ('Black Friday'), ('Natal');
"""
LEGACY_V1_SQL = LEGACY_V1_TABLE + LEGACY_V1_ROW + LEGACY_APP_TABLE
