"""Every SQL example of the seed document (WAHA_MULTIPLOS_SERVIDORES.md) runs as written.

The SQL below is copied verbatim from the seed; the only change, made by
`with_ids`, puts real UUIDs where the seed has placeholders ('user-uuid-aqui',
'server-uuid-aqui', 'user-id'). Scenarios 2 and 3 are elided in the seed
(`...`), so they are not runnable SQL; the conversion example (`SEU-USER-ID-AQUI`)
is what revision 0005 does and is tested with it.
"""

from __future__ import annotations

import uuid

import pytest

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


def with_ids(seed_sql: str, *, user: uuid.UUID, server: uuid.UUID | None = None) -> str:
    """The seed's SQL with real UUIDs in place of its placeholders, and nothing else changed."""
    sql = seed_sql.replace("'user-uuid-aqui'", f"'{user}'").replace("'user-id'", f"'{user}'")
    sql = sql.replace("'user-uuid'", f"'{user}'")
    if server is not None:
        sql = sql.replace("'server-uuid-aqui'", f"'{server}'")
    assert not any(placeholder in sql for placeholder in PLACEHOLDERS), "a placeholder was left in the seed SQL"
    return sql


def run_seed(tx, seed_sql: str, **ids):
    """Runs one seed block (possibly several statements) and returns the last statement's rows, if any."""
    cursor = tx.execute(with_ids(seed_sql, **ids))
    return cursor.fetchall() if cursor.description else None


def server_id_named(tx, user, nome: str) -> uuid.UUID:
    return tx.execute("SELECT id FROM public.waha_servers WHERE user_id = %s AND nome = %s", (user, nome)).fetchone()[0]


def best_server_name(tx, user) -> list[str]:
    return [row[1] for row in tx.execute("SELECT id, nome FROM public.get_available_waha_server(%s)", (user,))]


def test_como_usar_creates_the_servers_the_seed_lists(tx, add_user):
    user = add_user()
    run_seed(tx, CREATE_SERVER, user=user)
    run_seed(tx, ADD_MORE_SERVERS, user=user)

    rows = run_seed(tx, LIST_SERVERS, user=user)

    assert rows == [
        ("Servidor Principal", "https://waha1.seudominio.com", True, 0, 50, 10),
        ("Servidor Backup", "https://waha2.seudominio.com", True, 0, 30, 5),
        ("Servidor de Teste", "https://waha-test.seudominio.com", False, 0, 10, 0),
    ]


def test_como_usar_best_server_is_the_principal(tx, add_user):
    user = add_user()
    run_seed(tx, CREATE_SERVER, user=user)
    run_seed(tx, ADD_MORE_SERVERS, user=user)

    rows = run_seed(tx, BEST_SERVER, user=user)

    assert [row[2] for row in rows] == ["Servidor Principal"]
    assert rows[0][0] == server_id_named(tx, user, "Servidor Principal")


def test_load_balancing_example_without_schema_prefix_picks_the_principal(tx, add_user):
    user = add_user()
    run_seed(tx, CREATE_SERVER, user=user)
    run_seed(tx, ADD_MORE_SERVERS, user=user)
    assert [row[2] for row in run_seed(tx, LOAD_BALANCING, user=user)] == ["Servidor Principal"]


def test_como_usar_session_insert_and_counter_update(tx, add_user):
    user = add_user()
    run_seed(tx, CREATE_SERVER, user=user)
    server = server_id_named(tx, user, "Servidor Principal")

    run_seed(tx, CREATE_SESSION, user=user, server=server)

    session = tx.execute(
        "SELECT user_id, waha_server_id, session_name, status FROM public.waha_sessions WHERE user_id = %s", (user,)
    ).fetchall()
    assert session == [(user, server, "sessao-cliente-001", "connecting")]
    assert tx.execute("SELECT sessions_ativas FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0] == 1


def test_seeds_disabled_test_server_is_never_picked(tx, add_user):
    user = add_user()
    run_seed(tx, ADD_MORE_SERVERS, user=user)
    tx.execute("UPDATE public.waha_servers SET ativo = false WHERE user_id = %s AND nome = 'Servidor Backup'", (user,))
    assert best_server_name(tx, user) == []


def test_scenario_1_positional_inserts_fill_the_columns_in_order(tx, add_user):
    user = add_user()
    run_seed(tx, SCENARIO_1, user=user)

    rows = tx.execute(
        """
        SELECT nome, api_url, api_key, descricao, ativo, webhook_url, webhook_secret, timeout, retry_attempts,
               rate_limit, prioridade, max_sessions, sessions_ativas
        FROM public.waha_servers WHERE user_id = %s ORDER BY prioridade DESC
        """,
        (user,),
    ).fetchall()
    assert rows == [
        ("Principal", "https://waha-prod.com", "key1", "Servidor principal", True, None, None, 30, 3, 100, 10, 100, 0),
        ("Backup", "https://waha-backup.com", "key2", "Servidor de backup", True, None, None, 30, 3, 100, 5, 50, 0),
    ]


def test_scenario_1_uses_principal_first(tx, add_user):
    user = add_user()
    run_seed(tx, SCENARIO_1, user=user)
    assert best_server_name(tx, user) == ["Principal"]


@pytest.mark.parametrize("principal_sessions", [99, 100])
def test_scenario_1_uses_backup_when_principal_is_full(tx, add_user, principal_sessions):
    user = add_user()
    run_seed(tx, SCENARIO_1, user=user)
    tx.execute(
        "UPDATE public.waha_servers SET sessions_ativas = %s WHERE user_id = %s AND nome = 'Principal'",
        (principal_sessions, user),
    )
    assert best_server_name(tx, user) == (["Principal"] if principal_sessions < 100 else ["Backup"])


def test_scenario_1_falls_back_to_backup_when_principal_fails(tx, add_user):
    user = add_user()
    run_seed(tx, SCENARIO_1, user=user)
    principal = server_id_named(tx, user, "Principal")
    rows = tx.execute("SELECT nome FROM public.get_available_waha_server(%s, %s)", (user, [principal])).fetchall()
    assert rows == [("Backup",)]
