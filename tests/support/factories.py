"""The rows the tests put in a database: one factory per table, shared by every test.

Each factory writes where its first argument says (a `Target` of tests/support/databases.py:
a test's transaction, an Engine, a URL), fills every column a test does not name with a
value head accepts, and returns the new row's id. A test names only what it is about:

    user = add_user(tx)
    principal = add_server(tx, user, "Principal", prioridade=10, max_sessions=100)
    add_session(tx, user, principal, "loja-01", status="WORKING")

The legacy V1 waha_config's DDL is waha_db.checks.legacy's (the one copy `verify` uses too);
`add_legacy_config` writes its singleton row.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import sqlalchemy as sa

from tests.support.databases import Target, has_auth_users, run_sql
from waha_db.fleet.servers import Server

# The user a legacy V1 database's server is converted for, in every test that converts one.
LEGACY_OWNER = "7d3c6f0e-2a4b-4c8d-9e1f-0a1b2c3d4e5f"


def insert_statement(table: str, values: dict[str, Any]) -> str:
    """INSERT INTO `table` naming the columns of `values` (column -> value), one placeholder each."""
    names = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders})"


def insert_row(target: Target, table: str, values: dict[str, Any]) -> Any:
    """INSERT one row of `values` (column -> value) into `table`; its id."""
    return run_sql(target, insert_statement(table, values) + " RETURNING id", list(values.values()))[0][0]


def add_user(target: Target, user_id: uuid.UUID | str | None = None) -> uuid.UUID:
    """A user id (new, or the one given); where auth.users exists (Supabase) a row of it too."""
    user = uuid.UUID(str(user_id)) if user_id is not None else uuid.uuid4()
    if has_auth_users(target):
        run_sql(target, "INSERT INTO auth.users (id) VALUES (%s) ON CONFLICT DO NOTHING", (user,))
    return user


def server_url(name: str) -> str:
    """An http(s) URL no other server has, after the server's name (a test's servers tell apart in its output)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "waha"
    return f"https://{slug}-{uuid.uuid4().hex[:8]}.waha.example"


def add_server(target: Target, user_id: uuid.UUID | str, name: str = "alpha", **columns: Any) -> Any:
    """A waha_servers row of `user_id` named `name`, with a URL of its own; `columns` set any other column."""
    values = {"user_id": user_id, "nome": name, "api_url": server_url(name)}
    return insert_row(target, "public.waha_servers", {**values, **columns})


def add_session(target: Target, user_id: uuid.UUID | str, server_id: Any, name: str = "loja-01", **columns: Any) -> Any:
    """A waha_sessions row of `user_id` on `server_id` named `name`; `columns` set any other column (status...).

    A row written by hand: it takes no slot (allocate_waha_session does that).
    """
    values = {"user_id": user_id, "waha_server_id": server_id, "session_name": name}
    return insert_row(target, "public.waha_sessions", {**values, **columns})


# The user of the fleet's tests that need one fixed id (in their expected output).
FLEET_USER = uuid.UUID("0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44")


def add_waha_server(target: Target, user_id: uuid.UUID | str, url: str, name: str | None = None, **columns: Any) -> Any:
    """A waha_servers row at `url` (a fake WAHA on 127.0.0.1) that a probe tries once, for 1 s.

    Named after its URL unless `name` is given; `columns` set any other column (api_key,
    prioridade, sessions_ativas, a longer timeout...).
    """
    return add_server(
        target, user_id, name or f"waha {url}", **{"timeout": 1, "retry_attempts": 0, **columns, "api_url": url}
    )


def add_servers(
    target: Target, user_id: uuid.UUID | str, urls: list[str], name: str = "waha-{number:02d}", **columns: Any
) -> list[Any]:
    """A fleet of `user_id`: one server per URL (add_waha_server), named by the `name` template; their ids."""
    return [
        add_waha_server(target, user_id, url, name.format(number=number), **columns) for number, url in enumerate(urls)
    ]


# The largest values timeout and retry_attempts took before revision 0011 bounded them.
OLD_MAXIMUM = 2_147_483_647

# Rows older than revision 0011 may hold what its rules refuse: this drops its CHECKs on
# timeout, retry_attempts and api_url (where present), so a test can write such rows. The
# rules' triggers are bypassed by the writer itself: `SET [LOCAL] session_replication_role = replica`.
AS_BEFORE_0011 = """
DO $$
DECLARE rule record;
BEGIN
    FOR rule IN SELECT conname FROM pg_catalog.pg_constraint
                WHERE conrelid = 'public.waha_servers'::regclass AND contype = 'c'
                  AND pg_catalog.pg_get_constraintdef(oid) ~ '(timeout|retry_attempts|api_url)'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE public.waha_servers DROP CONSTRAINT %I', rule.conname);
    END LOOP;
END $$
"""


def add_servers_before_0011(engine: sa.Engine, user_id: uuid.UUID | str, urls: list[str], **columns: Any) -> list[Any]:
    """add_servers (a probe of 5 s unless told) with values revision 0011 refuses (OLD_MAXIMUM...), as rows
    written before it may hold them: in one transaction of `engine`, which the bypass of the triggers stays within.
    """
    with engine.begin() as connection:
        run_sql(connection, AS_BEFORE_0011)
        run_sql(connection, "SET LOCAL session_replication_role = replica")
        return add_servers(connection, user_id, urls, "server {number}", **{"timeout": 5, **columns})


# The `created_at` of server_row's servers of age 0.
EPOCH = dt.datetime(2025, 10, 28, tzinfo=dt.timezone.utc)


def server_row(
    name: str, priority: int, active_sessions: int, capacity: int, *, active: bool = True, age: int = 0
) -> Server:
    """A waha_servers row as the library reads it (a `Server`), without a database: what the pure parts screen."""
    return Server(
        id=uuid.uuid4(),
        user_id=uuid.UUID(int=1),
        nome=name,
        api_url=f"https://{name.lower()}.example",
        api_key=None,
        descricao=None,
        ativo=active,
        webhook_url=None,
        webhook_secret=None,
        timeout=30,
        retry_attempts=3,
        rate_limit=100,
        prioridade=priority,
        max_sessions=capacity,
        sessions_ativas=active_sessions,
        created_at=EPOCH - dt.timedelta(days=age),
        updated_at=EPOCH,
    )


def add_legacy_config(target: Target, **columns: Any) -> None:
    """The singleton row (id 1) of a legacy waha_config, with only the columns given (the rest NULL or default)."""
    values = {"id": 1, **columns}
    run_sql(target, insert_statement("public.waha_config", values), list(values.values()))


# A V2.1 database as a DBA following the seed's table lists would have typed it (no CHECKs, timestamp
# columns, a plain foreign key), holding the seed's Principal server and one of its sessions.
_HAND_MADE_V21 = """
CREATE TABLE public.waha_servers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL, nome varchar(255) NOT NULL,
    api_url text NOT NULL, api_key text, descricao text, ativo boolean DEFAULT true, webhook_url text,
    webhook_secret text, timeout integer DEFAULT 30, retry_attempts integer DEFAULT 3, rate_limit integer DEFAULT 100,
    prioridade integer DEFAULT 0, max_sessions integer DEFAULT 50, sessions_ativas integer DEFAULT 0,
    created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now(),
    UNIQUE (user_id, api_url)
);
CREATE TABLE public.waha_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL,
    waha_server_id uuid NOT NULL REFERENCES public.waha_servers (id) ON DELETE CASCADE,
    session_name varchar(255) NOT NULL, status varchar(50) DEFAULT 'STOPPED', phone_number varchar(20),
    profile_name varchar(255), qr_code text, last_connected_at timestamp,
    created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now(),
    UNIQUE (waha_server_id, session_name)
);
INSERT INTO public.waha_servers (id, user_id, nome, api_url, prioridade, max_sessions, sessions_ativas)
VALUES ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', 'Servidor Principal',
        'https://waha1.seudominio.example', {priority}, 50, 1);
INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status)
VALUES ('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'sessao-cliente-001', 'connecting');
"""


def hand_made_v21(priority: int = 10) -> str:
    """The SQL of that hand-made V2.1 database; a `priority` outside 0-10 is a row adopt must refuse."""
    return _HAND_MADE_V21.format(priority=priority)


# The seed document's three servers, as `waha-db servers add` options.
SEED_SERVERS = (
    (
        "--name",
        "Servidor Principal",
        "--url",
        "https://waha1.seudominio.example",
        "--api-key",
        "sua-api-key",
        "--description",
        "Servidor principal de produção",
        "--priority",
        "10",
        "--max-sessions",
        "50",
    ),
    (
        "--name",
        "Servidor Backup",
        "--url",
        "https://waha2.seudominio.example",
        "--priority",
        "5",
        "--max-sessions",
        "30",
    ),
    (
        "--name",
        "Servidor de Teste",
        "--url",
        "https://waha-test.seudominio.example",
        "--inactive",
        "--max-sessions",
        "10",
    ),
)


def add_seed_servers(waha_db: Any, url: Any, user: str) -> dict[str, str]:
    """The seed's three servers added with `waha-db servers add` (`waha_db` is the CLI fixture); their ids by name."""
    ids = {}
    for options in SEED_SERVERS:
        result = waha_db(url, "servers", "add", "--user", user, *options)
        assert result.exit_code == 0, result.output
        ids[options[1]] = re.search(r"id ([0-9a-f-]{36})", result.output).group(1)
    return ids
