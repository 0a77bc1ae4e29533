"""get_available_waha_server reads one priority level at a time, whatever plan is cached.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

plpgsql caches a generic plan for the selection after five calls: a plan built
without knowing the user, from the table's average of a few servers per user.
For 0007's priority look-up (`ORDER BY prioridade DESC LIMIT 1` over the user's
candidates) that plan is a bitmap scan of every active server of the user and a
sort, so a user with 1,000 servers paid for all of them on every call: on
10,000 users x 5 servers plus one user with 1,000, each call read 1,008 rows of
waha_servers for that user.

The selection now walks the priority levels from the top: prioridade is 0..10
(waha_servers_prioridade_range_check), and each level is one look-up of
waha_servers_user_id_prioridade_idx, (user_id, prioridade) WHERE ativo, whose
candidates are sorted by load; the first level with a candidate ends the query.
A call reads the user's active servers at the levels from 10 down to its best
level that has a free, non-excluded, non-cooling server, and the chosen row once
more (the same heavy user: 85 rows). An empty level costs one index descent.
The plan's shape does not depend on the user or on the plan cache: the levels
are a subquery sorted by its own ORDER BY (so it is not flattened, and the
planner knows its order); the per-level query ends in LIMIT 1, so it stays a
lateral subquery, rescanned once per level; a nested loop keeps its outer order,
so the outer ORDER BY needs no sort and LIMIT 1 stops at the first level that
answers. Within a level the planner picks the index from the table's statistics:
with statistics of the table as it is (what autovacuum's ANALYZE keeps),
(user_id, prioridade) is the cheapest for any table of more than a few pages; on
a table of three pages it read the user's servers through another index led by
user_id, a few pages either way. Statistics taken while the table was empty can
make it read one level of every user through waha_servers_prioridade_idx, as
they could 0007's look-up; ANALYZE puts both right.

Two costs of a large level went down too: it sorts ids and sort keys, not whole
rows (the chosen row is read by id), and load is compared in int8 instead of
numeric, still exactly: sessions_ativas / max_sessions as floor(sessions_ativas
* 2^62 / max_sessions) in two 31-bit digits. Two different ratios of integers
below 2^31 differ by more than 2^-62, so they never share a key, and equal ratios
always do; every value fits in int8.

Unchanged: the signature, the return type, STABLE, SECURITY INVOKER (row security
applies), search_path = '', the order (prioridade DESC, then load ASC, more free
slots, oldest, id), the ranking of cooling servers after all others and the
fallback to the cooling server whose cooldown ends first (its query reads only
the user's cooling servers, from the partial index of waha_server_health).
CREATE OR REPLACE keeps the owner, the grants and the comment. allocate_waha_session
takes its candidate from get_available_waha_server (0006), so its pick is bounded
the same way without being redefined.

The downgrade restores get_available_waha_server as revision 0007 defined it.
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
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
        $$;
        """
    )


def downgrade() -> None:
    # get_available_waha_server exactly as revision 0007 created it; CREATE OR
    # REPLACE keeps its owner, grants and comment.
    op.execute(
        """
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
        """
    )
