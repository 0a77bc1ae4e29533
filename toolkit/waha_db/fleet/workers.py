"""One WAHA worker, one server: two active servers of a user that name the same worker are flagged.

WAHA servers that share one session store each run with their own WAHA_WORKER_ID,
and say it at `GET /api/server/status` (`worker.id`, recorded by `servers test` and
`monitor` in waha_server_health.waha_worker_id, revision 0012). Two active servers
of one user that report the same non-empty worker id are one WAHA registered under
two URLs (an address and a host name, say), or two WAHA servers started with one
WAHA_WORKER_ID: either way each lists as its own the sessions the other runs, so
their sessions are counted twice and the live reconcile cannot tell whose they are.
`servers test` and `monitor` warn about it; `sessions reconcile --live` skips such
servers (waha_db.fleet.live). The grouping is pure; `recorded_workers` reads what
was recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from waha_db.fleet.servers import Server, server_columns, server_from_row


@dataclass(frozen=True)
class SharedWorker:
    """Active servers of one user that report one worker id."""

    user_id: uuid.UUID
    worker_id: str
    servers: tuple[Server, ...]

    @property
    def key(self) -> tuple[uuid.UUID, str, tuple[str, ...]]:
        return (self.user_id, self.worker_id, tuple(sorted(str(server.id) for server in self.servers)))

    def warning(self) -> str:
        """What the operator reads: which servers, what it means, what to do."""
        names = " and ".join(f"{server.nome} ({server.id})" for server in self.servers)
        return (
            f"{names} of user {self.user_id} report the same WAHA worker {self.worker_id!r} "
            "(GET /api/server/status): one WAHA registered twice, or two WAHA servers given one WAHA_WORKER_ID; "
            "each lists the other's sessions as its own, so they are counted twice and `sessions reconcile --live` "
            "skips them: keep one registration (waha-db servers disable ID), or give each WAHA its own WAHA_WORKER_ID"
        )


def shared_workers(servers: Iterable[Server], workers: Mapping[uuid.UUID, str | None]) -> list[SharedWorker]:
    """The groups of two or more active servers of one user with the same non-empty worker id (pure).

    `workers`: each server's worker id by server id (absent or None: none known).
    """
    groups: dict[tuple[uuid.UUID, str], list[Server]] = {}
    for server in servers:
        worker = workers.get(server.id)
        if server.ativo and worker:
            groups.setdefault((server.user_id, worker), []).append(server)
    return [
        SharedWorker(user_id, worker, tuple(sorted(members, key=lambda server: (server.nome, str(server.id)))))
        for (user_id, worker), members in sorted(groups.items(), key=lambda item: (str(item[0][0]), item[0][1]))
        if len(members) > 1
    ]


_RECORDED_SQL = f"""
SELECT {server_columns("server")}, health.waha_worker_id
FROM public.waha_servers AS server
JOIN public.waha_server_health AS health ON health.server_id = server.id
WHERE server.user_id = ANY (:users) AND server.ativo AND health.waha_worker_id IS NOT NULL
"""


def recorded_workers(
    connection: sa.Connection, user_ids: Sequence[uuid.UUID]
) -> tuple[list[Server], dict[uuid.UUID, str]]:
    """The active servers of the given users with a recorded worker id, and those ids (one statement)."""
    if not user_ids:
        return [], {}
    rows = connection.execute(sa.text(_RECORDED_SQL), {"users": sorted(set(user_ids), key=str)}).all()
    return [server_from_row(row) for row in rows], {row.id: row.waha_worker_id for row in rows}


def shared_worker_warnings(connection: sa.Connection, user_ids: Sequence[uuid.UUID]) -> list[str]:
    """`servers test`: the shared workers among the given users' active servers, as recorded now."""
    servers, workers = recorded_workers(connection, user_ids)
    return [group.warning() for group in shared_workers(servers, workers)]
