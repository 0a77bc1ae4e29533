"""Administration of WAHA servers, and the seed's "Meus Servidores WAHA" screen.

These are admin tools: they run as the database role of the URL (the owner or
service_role, which row security does not restrict) and name the user explicitly.
Rules are left to the database (its CHECK and UNIQUE constraints are the single
source of truth); a refusal comes back as `ServerRuleError` in plain words, mapped
from the constraint's name, instead of a raw SQL error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from fractions import Fraction
from typing import Any

import psycopg.errors
import sqlalchemy as sa

from waha_db.database import constraint_name, database_message
from waha_db.errors import UserError
from waha_db.fleet.identity import WahaIdentity, capacity_warning, recorded_identities

# Option name of the CLI -> column of waha_servers.
COLUMNS = {
    "name": "nome",
    "url": "api_url",
    "api_key": "api_key",
    "description": "descricao",
    "active": "ativo",
    "webhook_url": "webhook_url",
    "webhook_secret": "webhook_secret",
    "timeout": "timeout",
    "retries": "retry_attempts",
    "rate_limit": "rate_limit",
    "priority": "prioridade",
    "max_sessions": "max_sessions",
}

# The database's rules, by constraint name, in the words of the form and the CLI.
RULES = {
    "waha_servers_nome_not_blank_check": "name must not be blank",
    "waha_servers_api_url_http_check": "URL must be an http:// or https:// URL with a host, without spaces or user:password@, e.g. https://waha1.example.com",
    "waha_servers_webhook_url_http_check": "webhook URL must be an http:// or https:// URL with a host, without spaces or user:password@, e.g. https://app.example.com/webhook",
    "waha_servers_api_url_without_userinfo_check": "URL must not hold a user or password before the host "
    "(user:password@): remove them, and give WAHA's key with --api-key",
    "waha_servers_api_url_without_query_check": "URL must not have a query: remove everything from the ? on "
    "(WAHA's API paths are appended to the URL's path)",
    "waha_servers_api_url_without_fragment_check": "URL must not have a fragment: remove everything from the # on",
    "waha_servers_webhook_url_without_userinfo_check": "webhook URL must not hold a user or password before the host "
    "(user:password@): remove them, and give the webhook's secret with --webhook-secret",
    "waha_servers_webhook_url_without_query_check": "webhook URL must not have a query: remove everything from the ? on "
    "(give the webhook's secret with --webhook-secret)",
    "waha_servers_webhook_url_without_fragment_check": "webhook URL must not have a fragment: remove everything from the # on",
    "waha_servers_timeout_positive_check": "timeout must be between 1 and 120 seconds",
    "waha_servers_timeout_at_most_120_check": "timeout must be between 1 and 120 seconds",
    "waha_servers_retry_attempts_not_negative_check": "retries must be between 0 and 10",
    "waha_servers_retry_attempts_at_most_10_check": "retries must be between 0 and 10",
    "waha_servers_rate_limit_positive_check": "rate limit must be greater than 0 requests per minute",
    "waha_servers_prioridade_range_check": "priority must be between 0 and 10",
    "waha_servers_max_sessions_positive_check": "max sessions must be greater than 0",
    "waha_servers_sessions_ativas_not_negative_check": "active sessions cannot be negative",
    "waha_servers_user_id_api_url_key": "this user already has a server with that URL",
    "waha_servers_user_id_normalized_api_url_key": "this user already has a server with that URL, written differently "
    "(scheme and host in other case, the default port, or a trailing slash)",
    "waha_servers_user_id_fkey": "the user is not in auth.users",
    "waha_sessions_waha_server_id_user_id_fkey": "the server still has sessions (or its owner cannot change while it has sessions)",
}
NAME_LENGTH_RULE = "name must be at most 255 characters"


class ServerError(UserError):
    """A server command could not be done; the message says why in plain words."""


class ServerRuleError(ServerError):
    """The database refused a value: the message is the rule, not the SQL error."""


class ServerNotFound(ServerError):
    pass


@dataclass(frozen=True)
class Server:
    """A row of public.waha_servers: the one model of that table in the toolkit."""

    id: uuid.UUID
    user_id: uuid.UUID
    nome: str
    api_url: str
    api_key: str | None
    descricao: str | None
    ativo: bool
    webhook_url: str | None
    webhook_secret: str | None
    timeout: int
    retry_attempts: int
    rate_limit: int
    prioridade: int
    max_sessions: int
    sessions_ativas: int
    created_at: datetime
    updated_at: datetime

    @property
    def load(self) -> Fraction:
        return Fraction(self.sessions_ativas, self.max_sessions)

    @property
    def has_capacity(self) -> bool:
        return self.sessions_ativas < self.max_sessions

    def line(self) -> str:
        """`Principal (https://...), priority 10, active, 3/50 sessions; id ...`, as the CLI prints a server."""
        state = f"active, {self.sessions_ativas}/{self.max_sessions} sessions" if self.ativo else "disabled"
        return f"{self.nome} ({self.api_url}), priority {self.prioridade}, {state}; id {self.id}"

    def as_json(self, *, show_secrets: bool = False) -> dict[str, Any]:
        data = {
            key: (
                value.isoformat()
                if isinstance(value, datetime)
                else str(value)
                if isinstance(value, uuid.UUID)
                else value
            )
            for key, value in asdict(self).items()
        }
        if not show_secrets:
            for secret in ("api_key", "webhook_secret"):
                if data[secret] is not None:
                    data[secret] = "***"
        return data


# The columns a Server is read from, named (never `*`: a later revision may add columns).
SERVER_COLUMNS = ", ".join(field.name for field in fields(Server))


def server_columns(alias: str) -> str:
    """SERVER_COLUMNS qualified by a table alias, for queries that join waha_servers."""
    return ", ".join(f"{alias}.{field.name}" for field in fields(Server))


def server_from_row(row: sa.Row[Any]) -> Server:
    return Server(**{field.name: row._mapping[field.name] for field in fields(Server)})


def _servers(rows: Iterable[sa.Row[Any]]) -> list[Server]:
    return [server_from_row(row) for row in rows]


def _rule_error(error: sa.exc.DBAPIError) -> ServerError:
    """The plain-words rule behind a refusal of the database; the raw error when it is not one of ours."""
    original = error.orig
    diag = getattr(original, "diag", None)
    constraint = constraint_name(error)
    if constraint in RULES:
        return ServerRuleError(RULES[constraint])
    if isinstance(original, psycopg.errors.StringDataRightTruncation):
        # PostgreSQL names no column here; nome is the only length-limited column of waha_servers.
        return ServerRuleError(NAME_LENGTH_RULE)
    if isinstance(original, psycopg.errors.NotNullViolation):
        column = getattr(diag, "column_name", None)
        option = {v: k for k, v in COLUMNS.items()}.get(column, column) if isinstance(column, str) else column
        return ServerRuleError(f"{option} is required")
    return ServerError(database_message(error))


def list_servers(connection: sa.Connection, user_id: uuid.UUID) -> list[Server]:
    """A user's servers, ordered as the seed's listing query: `ORDER BY prioridade DESC, nome`."""
    rows = connection.execute(
        sa.text(
            f"SELECT {SERVER_COLUMNS} FROM public.waha_servers WHERE user_id = :user_id ORDER BY prioridade DESC, nome"
        ),
        {"user_id": user_id},
    )
    return _servers(rows)


def get_server(connection: sa.Connection, server_id: uuid.UUID) -> Server:
    rows = _servers(
        connection.execute(
            sa.text(f"SELECT {SERVER_COLUMNS} FROM public.waha_servers WHERE id = :id"), {"id": server_id}
        )
    )
    if not rows:
        raise ServerNotFound(
            f"no WAHA server with id {server_id}: list a user's servers with `waha-db servers list --user UUID`"
        )
    return rows[0]


def add_server(connection: sa.Connection, user_id: uuid.UUID, **values: object) -> Server:
    """Insert a server; options left out (None) take the database's defaults."""
    columns: dict[str, object] = {"user_id": user_id} | {
        COLUMNS[key]: value for key, value in values.items() if value is not None
    }
    names = ", ".join(columns)
    placeholders = ", ".join(f":{name}" for name in columns)
    try:
        with connection.begin_nested():
            row = connection.execute(
                sa.text(
                    f"INSERT INTO public.waha_servers ({names}) VALUES ({placeholders}) RETURNING {SERVER_COLUMNS}"
                ),
                columns,
            ).one()
    except sa.exc.DBAPIError as error:
        raise _rule_error(error) from None
    return server_from_row(row)


def update_server(connection: sa.Connection, server_id: uuid.UUID, **values: object) -> Server:
    """Change the given fields (None leaves a field as it is)."""
    changes = {COLUMNS[key]: value for key, value in values.items() if value is not None}
    if not changes:
        return get_server(connection, server_id)
    assignments = ", ".join(f"{name} = :{name}" for name in changes)
    try:
        with connection.begin_nested():
            row = connection.execute(
                sa.text(
                    f"UPDATE public.waha_servers SET {assignments} WHERE id = :server_id RETURNING {SERVER_COLUMNS}"
                ),
                changes | {"server_id": server_id},
            ).one_or_none()
    except sa.exc.DBAPIError as error:
        raise _rule_error(error) from None
    if row is None:
        get_server(connection, server_id)  # raises ServerNotFound
        raise ServerError(f"WAHA server {server_id} was not changed: the database let no row of it be updated")
    return server_from_row(row)


def set_active(connection: sa.Connection, server_id: uuid.UUID, active: bool) -> Server:
    return update_server(connection, server_id, active=active)


def session_count(connection: sa.Connection, server_id: uuid.UUID) -> int:
    count: int = connection.execute(
        sa.text("SELECT count(*) FROM public.waha_sessions WHERE waha_server_id = :id"), {"id": server_id}
    ).scalar_one()
    return count


def removal(connection: sa.Connection, server_id: uuid.UUID) -> Server:
    """The server `remove_server` would delete, read without a lock (for the question); refused while it has sessions."""
    server = get_server(connection, server_id)
    _refuse_while_in_use(connection, server)
    return server


def remove_server(connection: sa.Connection, server_id: uuid.UUID, *, shown: Server | None = None) -> Server:
    """Delete a server that has no sessions; a server with sessions is refused with their count.

    The count is taken under a lock on the server's row, and the database's foreign key
    refuses the delete anyway should a session arrive in between. `shown` is the row as a
    person confirmed it (`removal`, read before the question, so that no lock waits on
    a person): a row that changed since is refused, nothing deleted.
    """
    locked = _servers(
        connection.execute(
            sa.text(f"SELECT {SERVER_COLUMNS} FROM public.waha_servers WHERE id = :id FOR UPDATE"), {"id": server_id}
        )
    )
    if not locked:
        get_server(connection, server_id)
    server = locked[0]
    _refuse_while_in_use(connection, server)
    if shown is not None and server != shown:
        raise ServerError(
            f"server {server.nome!r} ({server_id}) changed after it was shown (another command, or the app, "
            "updated it): nothing was deleted; run the command again to see it as it is now"
        )
    try:
        with connection.begin_nested():
            connection.execute(sa.text("DELETE FROM public.waha_servers WHERE id = :id"), {"id": server_id})
    except sa.exc.DBAPIError as error:
        raise _rule_error(error) from None
    return server


def _refuse_while_in_use(connection: sa.Connection, server: Server) -> None:
    sessions = session_count(connection, server.id)
    if sessions:
        raise ServerError(
            f"server {server.nome!r} ({server.id}) still has {sessions} session{'s' if sessions != 1 else ''}: "
            "move or delete them first (DELETE FROM public.waha_sessions WHERE waha_server_id = ...), "
            f"or disable the server instead with `waha-db servers disable {server.id}`"
        )


GREEN, RED = "\N{LARGE GREEN CIRCLE}", "\N{LARGE RED CIRCLE}"


@dataclass(frozen=True)
class Listing:
    """`servers list`: a user's servers, and what each last reported being (servers never identified left out)."""

    servers: list[Server]
    identities: Mapping[uuid.UUID, WahaIdentity]

    def render(self) -> str:
        return render_server_list(self.servers, identities=self.identities)

    def as_json(self) -> list[dict[str, Any]]:
        """Each server (secrets masked), what it last reported being (`waha`), and its warning."""
        return [
            server.as_json()
            | {
                "waha": self.identities[server.id].as_json() if server.id in self.identities else None,
                "warning": capacity_warning(server, self.identities.get(server.id)),
            }
            for server in self.servers
        ]


def server_listing(connection: sa.Connection, user_id: uuid.UUID) -> Listing:
    """A user's servers in the seed's order, with what each last reported being."""
    found = list_servers(connection, user_id)
    return Listing(found, recorded_identities(connection, [server.id for server in found]))


def render_server_list(
    servers: list[Server], *, width: int = 56, identities: Mapping[uuid.UUID, WahaIdentity] | None = None
) -> str:
    """The seed's "Meus Servidores WAHA" screen, as text.

    One block per server: a green (active) or red (disabled) mark and the name, the URL,
    then `Sessões: 15/50  |  Prioridade: 10` or `Desativado  |  Prioridade: 0`, and, once a
    probe got an answer, what the server reported being (`WAHA 2024.10.1 (WEBJS, CORE)`).
    A warning with its fix follows the screen for each Core server with max_sessions > 1.
    """
    identities = identities or {}
    title = "Meus Servidores WAHA"
    rule = "─" * width
    lines = [f"┌{rule}┐", f"│ {title:<{width - 1}}│", f"├{rule}┤"]
    if not servers:
        lines.append(f"│ {'(nenhum servidor)':<{width - 1}}│")
    for index, server in enumerate(servers):
        mark = GREEN if server.ativo else RED
        state = f"Sessões: {server.sessions_ativas}/{server.max_sessions}" if server.ativo else "Desativado"
        details = f"{state:<15} |  Prioridade: {server.prioridade}"
        # The round marks are two columns wide in a terminal.
        lines.append(f"│ {mark} {_fit(server.nome, width - 4):<{width - 4}}│")
        lines.append(f"│    {_fit(server.api_url, width - 4):<{width - 4}}│")
        lines.append(f"│    {details:<{width - 4}}│")
        if server.id in identities:
            lines.append(f"│    {_fit(identities[server.id].describe(), width - 4):<{width - 4}}│")
        if index < len(servers) - 1:
            lines.append(f"├{rule}┤")
    lines.append(f"└{rule}┘")
    warnings = [capacity_warning(server, identities.get(server.id)) for server in servers]
    lines.extend(f"warning: {warning}" for warning in warnings if warning)
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
