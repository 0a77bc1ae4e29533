"""get_available_waha_server on large fleets: the seed's answer, at the cost of one priority level.

The selection walks the priority levels from the top and stops at the first that
has a candidate (revision 0008). Two things are proven here, on every V2.1 kind:
- its answer is the straightforward one (the whole fleet sorted by the rules, in
  Python), on randomized fleets with many priorities, loads (down to ratios that
  differ in the nineteenth decimal), cooldowns and exclusions, under plpgsql's
  custom plans and under the generic plan it caches;
- a call reads only the servers of the levels down to the best one that has a
  candidate, never the rest of a large fleet, under either plan, on a table
  analyzed as autovacuum keeps it. What it reads is counted by PostgreSQL
  (pg_stat_xact_user_tables: the rows of waha_servers this transaction fetched),
  so the count holds whatever the plan looks like.
"""

from __future__ import annotations

import datetime
import random
import uuid
from dataclasses import dataclass
from fractions import Fraction

import psycopg
import pytest

from tests.support.assertions import CHECK_VIOLATION
from tests.support.factories import add_server, add_user
from waha_db.database import conninfo

PLAN_CACHE_MODES = ("force_custom_plan", "force_generic_plan")

ROWS_READ = """
SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0)
FROM pg_catalog.pg_stat_xact_user_tables WHERE relid = 'public.waha_servers'::regclass
"""


@dataclass
class Server:
    id: uuid.UUID
    user_id: uuid.UUID
    ativo: bool
    prioridade: int
    max_sessions: int
    sessions_ativas: int
    created_at: datetime.datetime
    cooldown_until: datetime.datetime | None


def expected_pick(servers: list[Server], excluded: list | None, now: datetime.datetime) -> uuid.UUID | None:
    """The seed's rules applied to the whole fleet at once: what the function must return."""
    skipped = {server_id for server_id in excluded or [] if server_id is not None}
    candidates = [
        server
        for server in servers
        if server.ativo and server.sessions_ativas < server.max_sessions and server.id not in skipped
    ]

    def rank(server: Server):
        cooling = server.cooldown_until is not None and server.cooldown_until > now
        return (
            cooling,  # servers cooling down come after every other one...
            server.cooldown_until if cooling else now,  # ...the earliest cooldown end first
            -server.prioridade,
            Fraction(server.sessions_ativas, server.max_sessions),
            -(server.max_sessions - server.sessions_ativas),
            server.created_at,
            server.id,  # PostgreSQL orders uuids by their bytes, as Python does
        )

    return min(candidates, key=rank).id if candidates else None


HUGE = 2**31 - 1  # the largest max_sessions


def random_fleet(tx, seed: int, users: int) -> tuple[dict[uuid.UUID, list[Server]], datetime.datetime]:
    """`users` users with 1-30 servers each, drawn so that ties and edge cases are frequent."""
    draw = random.Random(seed)
    now = tx.execute("SELECT now()").fetchone()[0]
    moments = [now - datetime.timedelta(days=days) for days in (1, 2, 3)]
    cooldown_ends = [now + datetime.timedelta(seconds=seconds) for seconds in (-60, 30, 60, 600)]
    fleets: dict[uuid.UUID, list[Server]] = {}
    for _ in range(users):
        user = add_user(tx)
        levels = draw.sample(range(11), draw.randint(1, 4))
        fleets[user] = []
        for _ in range(draw.randint(1, 30)):
            max_sessions = draw.choice((1, 2, 3, 4, 5, 10, 50, HUGE, HUGE - 1, HUGE - 2))
            if max_sessions < HUGE - 2:
                sessions_ativas = draw.randint(0, max_sessions + 1)  # full and over capacity too
            else:  # loads that differ only in the nineteenth decimal
                sessions_ativas = max_sessions - draw.randint(0, 2)
            fleets[user].append(
                Server(
                    id=uuid.UUID(int=draw.getrandbits(128)),
                    user_id=user,
                    ativo=draw.random() < 0.85,
                    prioridade=draw.choice(levels),
                    max_sessions=max_sessions,
                    sessions_ativas=sessions_ativas,
                    created_at=draw.choice(moments),
                    cooldown_until=draw.choice(cooldown_ends) if draw.random() < 0.3 else None,
                )
            )
    with tx.cursor().copy(
        "COPY public.waha_servers (id, user_id, nome, api_url, ativo, prioridade, max_sessions, sessions_ativas, created_at) "
        "FROM STDIN"
    ) as copy:
        for server in (server for fleet in fleets.values() for server in fleet):
            copy.write_row(
                (
                    server.id,
                    server.user_id,
                    "random",
                    f"https://{server.id}.waha.example",
                    server.ativo,
                    server.prioridade,
                    server.max_sessions,
                    server.sessions_ativas,
                    server.created_at,
                )
            )
    with tx.cursor().copy(
        "COPY public.waha_server_health (server_id, user_id, consecutive_failures, cooldown_until) FROM STDIN"
    ) as copy:
        for server in (server for fleet in fleets.values() for server in fleet if server.cooldown_until is not None):
            copy.write_row((server.id, server.user_id, 3, server.cooldown_until))
    return fleets, now


def exclusions(draw: random.Random, fleet: list[Server]) -> list[list | None]:
    """What the app passes: nothing, a random subset of the fleet (with a stranger's id and a NULL), NULL."""
    subset = draw.sample([server.id for server in fleet], draw.randint(0, len(fleet)))
    return [[], subset + [uuid.uuid4(), None], None]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_pick_equals_the_whole_fleet_sorted_by_the_rules_on_random_fleets(tx, seed):
    fleets, now = random_fleet(tx, seed, users=60)
    draw = random.Random(seed)
    asked = [(user, excluded) for user, fleet in fleets.items() for excluded in exclusions(draw, fleet)]

    wrong = []
    for mode in PLAN_CACHE_MODES:
        tx.execute(f"SET LOCAL plan_cache_mode = {mode}")
        for user, excluded in asked:
            row = tx.execute(
                "SELECT id FROM public.get_available_waha_server(%s, %s::uuid[])", (user, excluded)
            ).fetchone()
            picked, wanted = (row[0] if row else None), expected_pick(fleets[user], excluded, now)
            if picked != wanted:
                wrong.append(f"{mode}: user {user} excluding {excluded}: picked {picked}, the rules say {wanted}")

    assert not wrong, f"{len(wrong)} of {2 * len(asked)} picks differ from the rules:\n" + "\n".join(wrong[:10])


@pytest.mark.parametrize("seed", [4, 5])
def test_allocation_takes_the_slot_the_rules_give_on_random_fleets(tx, seed):
    fleets, now = random_fleet(tx, seed, users=20)

    wrong = []
    for user, fleet in fleets.items():
        wanted = expected_pick(fleet, None, now)
        if wanted is None:
            continue
        session = tx.execute(
            "SELECT waha_server_id FROM public.allocate_waha_session(%s, 'rules-check')", (user,)
        ).fetchone()
        if session[0] != wanted:
            wrong.append(f"user {user}: allocated on {session[0]}, the rules say {wanted}")

    assert not wrong, "\n".join(wrong)


def test_a_lone_server_is_picked_at_every_priority_the_table_accepts(tx):
    """The levels walked cover the priority range; widening the range without the selection fails here."""
    accepted = []
    for prioridade in range(-5, 16):
        user = add_user(tx)
        try:
            with tx.transaction():
                server = add_server(tx, user, prioridade=prioridade)
        except psycopg.Error as error:
            assert error.sqlstate == CHECK_VIOLATION, error
            continue
        accepted.append(prioridade)
        assert tx.execute("SELECT id FROM public.get_available_waha_server(%s)", (user,)).fetchone() == (server,), (
            f"a lone active server with prioridade {prioridade} was not picked"
        )
    assert accepted, "the table accepted no priority at all"


LEVEL_SIZE = 60  # servers at each priority level 0-9 of a large fleet


@pytest.fixture(scope="module")
def large_fleets(v21_module_url) -> dict[str, uuid.UUID]:
    """Users with 600 free servers at levels 0-9 and, at level 10, an inactive one, a full one and
    1 ("one free at the top"), 0 ("none free at the top") or 60 ("room at the top") free ones; plus
    users with 5 servers each, so the table is not one user's alone. Committed and analyzed, as
    autovacuum leaves a production table: the planner then knows a user from a priority level.
    """
    users = {"one free at the top": 1, "none free at the top": 0, "room at the top": LEVEL_SIZE}
    ids = {label: uuid.uuid4() for label in users}
    with psycopg.connect(conninfo(v21_module_url), autocommit=True) as connection:
        others = [uuid.uuid4() for _ in range(200)]
        if connection.execute("SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL").fetchone()[0]:
            connection.execute("INSERT INTO auth.users (id) SELECT unnest(%s::uuid[])", ([*ids.values(), *others],))
        for label, top_free in users.items():
            connection.execute(
                """
                INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, max_sessions, sessions_ativas, ativo)
                SELECT %(user)s, 'level ' || level, 'https://l' || level || '-s' || s || '.waha.example', level, 50, s %% 49, true
                FROM generate_series(0, 9) AS level, generate_series(1, %(size)s) AS s
                UNION ALL SELECT %(user)s, 'top inactive', 'https://top-inactive.waha.example', 10, 50, 0, false
                UNION ALL SELECT %(user)s, 'top full', 'https://top-full.waha.example', 10, 50, 50, true
                UNION ALL SELECT %(user)s, 'top free ' || s, 'https://top-free-' || s || '.waha.example', 10, 50, s, true
                FROM generate_series(1, %(top_free)s) AS s
                """,
                {"user": ids[label], "size": LEVEL_SIZE, "top_free": top_free},
            )
        connection.execute(
            """
            INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade)
            SELECT other, 'other ' || s, 'https://other-' || s || '.waha.example', (s * ordinality) %% 11
            FROM unnest(%s::uuid[]) WITH ORDINALITY AS others (other, ordinality), generate_series(1, 5) AS s
            """,
            (others,),
        )
        connection.execute("ANALYZE public.waha_servers")
    return ids


def rows_read_by(tx, statement: str, params) -> tuple[int, tuple]:
    """(rows of waha_servers the statement read, its first row)."""
    before = tx.execute(ROWS_READ).fetchone()[0]
    row = tx.execute(statement, params).fetchone()
    return tx.execute(ROWS_READ).fetchone()[0] - before, row


PICK = "SELECT nome FROM public.get_available_waha_server(%s)"


@pytest.mark.parametrize("mode", PLAN_CACHE_MODES)
def test_a_pick_reads_only_the_best_level_of_a_large_fleet(v21_tx, large_fleets, mode):
    v21_tx.execute(f"SET LOCAL plan_cache_mode = {mode}")

    for _ in range(7):  # past plpgsql's five custom plans: the plan it keeps
        read, picked = rows_read_by(v21_tx, PICK, (large_fleets["one free at the top"],))

    assert picked == ("top free 1",)
    # Level 10's two active servers, then the chosen one again, by id.
    assert read <= 2 + 1, f"one pick read {read} rows of waha_servers; level 10 has 2 active servers, the fleet 602"


@pytest.mark.parametrize("mode", PLAN_CACHE_MODES)
def test_a_top_level_without_room_costs_its_own_servers_and_the_next_level(v21_tx, large_fleets, mode):
    v21_tx.execute(f"SET LOCAL plan_cache_mode = {mode}")

    for _ in range(7):
        read, picked = rows_read_by(v21_tx, PICK, (large_fleets["none free at the top"],))

    assert picked == ("level 9",)
    assert read <= 1 + LEVEL_SIZE + 1, (
        f"one pick read {read} rows of waha_servers; levels 10 and 9 hold {1 + LEVEL_SIZE} active"
    )


@pytest.mark.parametrize("mode", PLAN_CACHE_MODES)
def test_an_allocation_reads_only_the_best_level_of_a_large_fleet(v21_tx, large_fleets, mode):
    user = large_fleets["room at the top"]  # room for every allocation below at level 10
    v21_tx.execute(f"SET LOCAL plan_cache_mode = {mode}")

    for attempt in range(7):
        read, session = rows_read_by(
            v21_tx, "SELECT waha_server_id FROM public.allocate_waha_session(%s, %s)", (user, f"s{attempt}")
        )

    chosen = v21_tx.execute("SELECT prioridade FROM public.waha_servers WHERE id = %s", (session[0],)).fetchone()
    assert chosen == (10,)
    # The pick reads level 10's active servers and the chosen one again; the slot's
    # UPDATE and the new session's foreign-key check read it once more each.
    assert read <= LEVEL_SIZE + 1 + 3, (
        f"one allocation read {read} rows of waha_servers; level 10 has {LEVEL_SIZE + 1} active, the fleet {11 * LEVEL_SIZE + 1}"
    )
