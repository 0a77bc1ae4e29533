"""The seed document's own SQL, and the selection rules it implies, as examples `verify` and the tests run.

The SQL below is copied verbatim from the seed (WAHA_MULTIPLOS_SERVIDORES.md); the
only change, made by `with_ids`, puts real UUIDs where the seed has placeholders
('user-uuid-aqui', 'server-uuid-aqui', 'user-id'). Scenarios 2 and 3 are elided in
the seed (`...`), so they are not runnable SQL; the conversion example
(`SEU-USER-ID-AQUI`) is what the conversion revision does, checked by
suite.legacy_conversion.

Each example is a function of a psycopg connection inside a transaction the caller
rolls back, and of a factory of new user ids; it returns what went wrong, one line
per problem (empty: the example holds). `verify` runs them all in one rolled-back
transaction; the tests run each on every kind of V2.1 database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg

# ---- "Como Usar", 1. Criar Novo Servidor WAHA
CREATE_SERVER = """
INSERT INTO public.waha_servers (
    user_id,
    nome,
    api_url,
    api_key,
    descricao,
    prioridade,
    max_sessions
) VALUES (
    'user-uuid-aqui',
    'Servidor Principal',
    'https://waha1.seudominio.com',
    'sua-api-key',
    'Servidor principal de produção',
    10, -- Prioridade alta
    50  -- Máximo 50 sessões
);
"""

# ---- "Como Usar", 2. Adicionar Mais Servidores
ADD_MORE_SERVERS = """
-- Servidor Secundário
INSERT INTO public.waha_servers (
    user_id,
    nome,
    api_url,
    prioridade,
    max_sessions
) VALUES (
    'user-uuid-aqui',
    'Servidor Backup',
    'https://waha2.seudominio.com',
    5,  -- Prioridade média
    30
);

-- Servidor de Testes
INSERT INTO public.waha_servers (
    user_id,
    nome,
    api_url,
    ativo,
    max_sessions
) VALUES (
    'user-uuid-aqui',
    'Servidor de Teste',
    'https://waha-test.seudominio.com',
    false, -- Desativado por padrão
    10
);
"""

# ---- "Como Usar", 3. Listar Servidores do Usuário
LIST_SERVERS = """
SELECT 
    nome,
    api_url,
    ativo,
    sessions_ativas,
    max_sessions,
    prioridade
FROM public.waha_servers
WHERE user_id = 'user-uuid-aqui'
ORDER BY prioridade DESC, nome;
"""

# ---- "Como Usar", 4. Obter Melhor Servidor Disponível
BEST_SERVER = """
SELECT * FROM public.get_available_waha_server('user-uuid-aqui');
"""

# ---- "Como Usar", 5. Criar Sessão em Servidor Específico
CREATE_SESSION = """
INSERT INTO public.waha_sessions (
    user_id,
    waha_server_id,
    session_name,
    status
) VALUES (
    'user-uuid-aqui',
    'server-uuid-aqui',
    'sessao-cliente-001',
    'connecting'
);

-- Atualizar contador de sessões ativas
UPDATE public.waha_servers
SET sessions_ativas = sessions_ativas + 1
WHERE id = 'server-uuid-aqui';
"""

# ---- "Exemplos de Uso", Cenário 1: Produção com Backup
SCENARIO_1 = """
-- Servidor Principal (alta prioridade)
INSERT INTO waha_servers VALUES (
    gen_random_uuid(), 'user-id', 'Principal',
    'https://waha-prod.com', 'key1',
    'Servidor principal', true,
    NULL, NULL, 30, 3, 100, 10, 100, 0,
    NOW(), NOW()
);

-- Servidor Backup (prioridade menor)
INSERT INTO waha_servers VALUES (
    gen_random_uuid(), 'user-id', 'Backup',
    'https://waha-backup.com', 'key2',
    'Servidor de backup', true,
    NULL, NULL, 30, 3, 100, 5, 50, 0,
    NOW(), NOW()
);
"""

# ---- "Exemplos de Uso", 1. Load Balancing Automático (without schema, placeholder 'user-uuid')
LOAD_BALANCING = """
-- Função que retorna o melhor servidor disponível
SELECT * FROM get_available_waha_server('user-uuid');
"""


PLACEHOLDERS = ("'user-uuid-aqui'", "'server-uuid-aqui'", "'user-id'", "'user-uuid'")

NewUser = Callable[[], uuid.UUID]
Example = Callable[[psycopg.Connection, NewUser], list[str]]


def with_ids(seed_sql: str, *, user: uuid.UUID, server: uuid.UUID | None = None) -> str:
    """The seed's SQL with real UUIDs in place of its placeholders, and nothing else changed."""
    sql = seed_sql.replace("'user-uuid-aqui'", f"'{user}'").replace("'user-id'", f"'{user}'")
    sql = sql.replace("'user-uuid'", f"'{user}'")
    if server is not None:
        sql = sql.replace("'server-uuid-aqui'", f"'{server}'")
    if any(placeholder in sql for placeholder in PLACEHOLDERS):
        raise ValueError("a placeholder was left in the seed SQL")
    return sql


def run_seed(
    db: psycopg.Connection, seed_sql: str, *, user: uuid.UUID, server: uuid.UUID | None = None
) -> list[tuple[Any, ...]]:
    """Run one seed block (possibly several statements); the last statement's rows (none for a statement without)."""
    cursor = db.execute(with_ids(seed_sql, user=user, server=server))
    return cursor.fetchall() if cursor.description else []


def server_id_named(db: psycopg.Connection, user: uuid.UUID, nome: str) -> uuid.UUID:
    found = db.execute("SELECT id FROM public.waha_servers WHERE user_id = %s AND nome = %s", (user, nome)).fetchone()
    if found is None:
        raise LookupError(f"the user {user} has no server named {nome!r}")
    server: uuid.UUID = found[0]
    return server


def best(db: psycopg.Connection, user: uuid.UUID, excluded: list[uuid.UUID] | None = None) -> list[str]:
    """The names get_available_waha_server returns (at most one), with or without exclusions."""
    if excluded is None:
        rows = db.execute("SELECT nome FROM public.get_available_waha_server(%s)", (user,))
    else:
        rows = db.execute("SELECT nome FROM public.get_available_waha_server(%s, %s)", (user, excluded))
    return [row[0] for row in rows]


def expect(what: str, got: object, wanted: object) -> list[str]:
    return [] if got == wanted else [f"{what}: expected {wanted!r}, got {got!r}"]


EXAMPLES: dict[str, Example] = {}


def example(function: Example) -> Example:
    """Register an example under its function's name (its name says what holds)."""
    EXAMPLES[function.__name__] = function
    return function


def _seed_servers(db: psycopg.Connection, new_user: NewUser) -> uuid.UUID:
    user = new_user()
    run_seed(db, CREATE_SERVER, user=user)
    run_seed(db, ADD_MORE_SERVERS, user=user)
    return user


@example
def como_usar_creates_the_servers_the_seed_lists(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = _seed_servers(db, new_user)
    return expect(
        "the seed's listing",
        run_seed(db, LIST_SERVERS, user=user),
        [
            ("Servidor Principal", "https://waha1.seudominio.com", True, 0, 50, 10),
            ("Servidor Backup", "https://waha2.seudominio.com", True, 0, 30, 5),
            ("Servidor de Teste", "https://waha-test.seudominio.com", False, 0, 10, 0),
        ],
    )


@example
def como_usar_best_server_is_the_principal(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = _seed_servers(db, new_user)
    rows = run_seed(db, BEST_SERVER, user=user)
    return expect(
        "the seed's best server (id, nome)",
        [(row[0], row[2]) for row in rows],
        [(server_id_named(db, user, "Servidor Principal"), "Servidor Principal")],
    )


@example
def load_balancing_example_without_schema_prefix_picks_the_principal(
    db: psycopg.Connection, new_user: NewUser
) -> list[str]:
    user = _seed_servers(db, new_user)
    return expect(
        "get_available_waha_server without public.",
        [row[2] for row in run_seed(db, LOAD_BALANCING, user=user)],
        ["Servidor Principal"],
    )


@example
def como_usar_session_insert_and_counter_update(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = new_user()
    run_seed(db, CREATE_SERVER, user=user)
    server = server_id_named(db, user, "Servidor Principal")
    run_seed(db, CREATE_SESSION, user=user, server=server)
    session = db.execute(
        "SELECT user_id, waha_server_id, session_name, status FROM public.waha_sessions WHERE user_id = %s", (user,)
    ).fetchall()
    counter = db.execute("SELECT sessions_ativas FROM public.waha_servers WHERE id = %s", (server,)).fetchall()
    return expect("the seed's session", session, [(user, server, "sessao-cliente-001", "connecting")]) + expect(
        "sessions_ativas after the seed's UPDATE", counter, [(1,)]
    )


@example
def seeds_disabled_test_server_is_never_picked(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = new_user()
    run_seed(db, ADD_MORE_SERVERS, user=user)
    db.execute("UPDATE public.waha_servers SET ativo = false WHERE user_id = %s AND nome = 'Servidor Backup'", (user,))
    return expect("only Servidor de Teste (disabled) left", best(db, user), [])


@example
def scenario_1_positional_inserts_fill_the_columns_in_order(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = new_user()
    run_seed(db, SCENARIO_1, user=user)
    rows = db.execute(
        """
        SELECT nome, api_url, api_key, descricao, ativo, webhook_url, webhook_secret, timeout, retry_attempts,
               rate_limit, prioridade, max_sessions, sessions_ativas
        FROM public.waha_servers WHERE user_id = %s ORDER BY prioridade DESC
        """,
        (user,),
    ).fetchall()
    return expect(
        "Cenário 1's positional rows",
        rows,
        [
            (
                "Principal",
                "https://waha-prod.com",
                "key1",
                "Servidor principal",
                True,
                None,
                None,
                30,
                3,
                100,
                10,
                100,
                0,
            ),
            ("Backup", "https://waha-backup.com", "key2", "Servidor de backup", True, None, None, 30, 3, 100, 5, 50, 0),
        ],
    )


@example
def scenario_1_uses_principal_first_then_backup_when_principal_is_full(
    db: psycopg.Connection, new_user: NewUser
) -> list[str]:
    user = new_user()
    run_seed(db, SCENARIO_1, user=user)
    problems = expect("Cenário 1, nothing used", best(db, user), ["Principal"])
    for sessions, wanted in ((99, ["Principal"]), (100, ["Backup"])):
        db.execute(
            "UPDATE public.waha_servers SET sessions_ativas = %s WHERE user_id = %s AND nome = 'Principal'",
            (sessions, user),
        )
        problems += expect(f"Cenário 1, Principal at {sessions}/100", best(db, user), wanted)
    return problems


@example
def scenario_1_falls_back_to_backup_when_principal_fails(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = new_user()
    run_seed(db, SCENARIO_1, user=user)
    return expect("Cenário 1 excluding Principal", best(db, user, [server_id_named(db, user, "Principal")]), ["Backup"])


@example
def equal_priority_lower_exact_load_wins(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    """1/3 < 2/5, which integer division would tie at 0."""
    user = new_user()
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, sessions_ativas, max_sessions) VALUES "
        "(%s, 'two-fifths', 'https://a.example', 5, 2, 5), (%s, 'one-third', 'https://b.example', 5, 1, 3)",
        (user, user),
    )
    problems = expect("equal priority: lower exact load wins", best(db, user), ["one-third"])
    db.execute(
        "INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, sessions_ativas, max_sessions) VALUES "
        "(%s, 'busy-but-preferred', 'https://c.example', 6, 9, 10)",
        (user,),
    )
    return problems + expect("higher priority wins over lower load", best(db, user), ["busy-but-preferred"])


@example
def unknown_user_gets_no_row(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    return expect("unknown user", best(db, uuid.uuid4()), [])


@example
def the_forms_rules_are_the_databases(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    user = new_user()
    problems: list[str] = []
    for column, value, constraint in (
        ("prioridade", 11, "waha_servers_prioridade_range_check"),
        ("max_sessions", 0, "waha_servers_max_sessions_positive_check"),
        ("api_url", "ftp://waha.example", "waha_servers_api_url_http_check"),
    ):
        columns = "nome, api_url" if column == "api_url" else f"nome, api_url, {column}"
        values = ("x", value) if column == "api_url" else ("x", "https://rule.example", value)
        try:
            with db.transaction():
                db.execute(
                    f"INSERT INTO public.waha_servers (user_id, {columns}) VALUES (%s{', %s' * len(values)})",
                    (user, *values),
                )
            problems.append(f"{column} = {value!r} was accepted; expected {constraint} to refuse it")
        except psycopg.errors.CheckViolation as error:
            problems += expect(f"constraint refusing {column} = {value!r}", error.diag.constraint_name, constraint)
    return problems


def run_examples(db: psycopg.Connection, new_user: NewUser) -> list[str]:
    """Every example, each in a savepoint of the caller's transaction; the problems, named by example.

    A transaction is opened when none is (the caller rolls it back), so no example commits.
    """
    if db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        db.execute("SELECT 1")
    problems: list[str] = []
    for name, run in EXAMPLES.items():
        with db.transaction():
            problems += [f"{name}: {problem}" for problem in run(db, new_user)]
    return problems
