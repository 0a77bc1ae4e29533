"""`waha-db adopt` (and `status`) on V2.1 databases made by hand from the seed's document."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import sql
from tests.cli.test_upgrade import revision_of
from waha_db.lifecycle import revisions

# What a DBA following the seed's table lists would have typed (no CHECKs, timestamp columns, a plain FK).
HAND_MADE_V21 = """
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
        'https://waha1.seudominio.example', %(priority)s, 50, 1);
INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status)
VALUES ('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'sessao-cliente-001', 'connecting');
"""


@pytest.fixture
def hand_made(cluster, fresh_database):
    def make(priority: int = 10):
        url = fresh_database("empty")
        cluster.run_sql(url.database, HAND_MADE_V21.replace("%(priority)s", str(priority)))
        return url

    return make


def test_status_says_a_hand_made_database_is_adoptable(waha_db, hand_made):
    result = waha_db(hand_made(), "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["state"] == "hand_made" and report["details"] == [] and report["next"] == "waha-db adopt"


def test_adopt_refuses_without_a_terminal(waha_db, hand_made):
    url = hand_made()
    result = waha_db(url, "adopt")
    assert result.exit_code == 1
    assert "adoption plan:" in result.output and "no terminal to ask on" in result.output
    assert revision_of(url) is None


def test_adopt_keeps_every_row_and_reaches_head_without_drift(waha_db, hand_made):
    url = hand_made()
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 0, result.output
    assert revision_of(url) == revisions.head()
    assert sql(url, "SELECT nome, sessions_ativas FROM public.waha_servers") == [("Servidor Principal", 1)]
    assert sql(url, "SELECT session_name, status FROM public.waha_sessions") == [("sessao-cliente-001", "connecting")]
    assert waha_db(url, "status", "--check").exit_code == 0


def test_adopt_lists_the_problems_and_changes_nothing(waha_db, hand_made):
    url = hand_made(priority=42)
    status = json.loads(waha_db(url, "status", "--json").output)
    assert status["state"] == "hand_made" and any("prioridade" in problem for problem in status["details"])
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 1
    assert "cannot adopt:" in result.output and "prioridade" in result.output
    assert revision_of(url) is None
    assert sql(url, "SELECT prioridade FROM public.waha_servers") == [(42,)]


def test_adopting_a_database_that_never_had_waha_config_never_mentions_it(waha_db, hand_made):
    url = hand_made()
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 0, result.output
    assert "waha_config" not in result.output
    plan = result.output.split("adoption plan:")[1]
    assert plan.count("create table public.waha_server_health\n") == 1  # the table is created once, said once
    assert "create relation public.waha_server_health" not in plan
