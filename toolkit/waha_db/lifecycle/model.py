"""SQLAlchemy metadata of the V2.1 tables, used to detect drift.

After `upgrade head`, comparing this metadata with the database (what `alembic
check` does) finds no difference. The migrations never import this module: they
are frozen, this is the live model.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Objects of the migrations that are not tables of this metadata, or exist only on
# some databases; the drift comparison leaves them to the catalog checks of verify.
UNMODELLED_TABLES = frozenset({"alembic_version", "waha_config", "waha_config_v1"})

now = sa.text("now()")

# An http(s) URL as a whole: scheme, a host (a name without spaces or user:password@,
# or a bracketed IPv6 address), an optional port, an optional path/query/fragment.
HTTP_URL = r"'^https?://([^\s/?#@:\[\]]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$'"
# A user (and maybe a password) before the host: `user@` or `user:password@` after the `//`.
USERINFO = "'^[^/?#]*//[^/?#]*@'"

# The tables live in the connection's default schema, public; leaving `schema` unset
# lets Alembic's comparison match them (and their foreign keys) with the reflected
# ones, which it reports without a schema. Check constraints are listed for the
# reader and for `check_constraint_names`; Alembic does not compare them.

waha_servers = sa.Table(
    "waha_servers",
    metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
    sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("nome", sa.String(255), nullable=False),
    sa.Column("api_url", sa.Text, nullable=False),
    sa.Column("api_key", sa.Text),
    sa.Column("descricao", sa.Text),
    sa.Column("ativo", sa.Boolean, nullable=False, server_default=sa.text("true")),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_secret", sa.Text),
    sa.Column("timeout", sa.Integer, nullable=False, server_default=sa.text("30")),
    sa.Column("retry_attempts", sa.Integer, nullable=False, server_default=sa.text("3")),
    sa.Column("rate_limit", sa.Integer, nullable=False, server_default=sa.text("100")),
    sa.Column("prioridade", sa.Integer, nullable=False, server_default=sa.text("0"), comment="Higher wins, 0..10."),
    sa.Column("max_sessions", sa.Integer, nullable=False, server_default=sa.text("50")),
    sa.Column(
        "sessions_ativas",
        sa.Integer,
        nullable=False,
        server_default=sa.text("0"),
        comment="Sessions occupying capacity on this server.",
    ),
    sa.Column("created_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=now),
    sa.UniqueConstraint("user_id", "api_url"),
    sa.UniqueConstraint("id", "user_id"),
    sa.Index(
        "waha_servers_user_id_prioridade_idx", "user_id", sa.text("prioridade DESC"), postgresql_where=sa.text("ativo")
    ),
    sa.Index("waha_servers_ativo_idx", "ativo"),
    sa.Index("waha_servers_prioridade_idx", sa.text("prioridade DESC")),
    # One URL per WAHA server for a user, however it is written (http://h:1/ is http://h:1); the function is
    # the migrations' (revision 0010).
    sa.Index(
        "waha_servers_user_id_normalized_api_url_key",
        "user_id",
        sa.text("waha_normalized_url(api_url)"),
        unique=True,
    ),
    sa.CheckConstraint(r"nome ~ '\S'", name="nome_not_blank"),
    sa.CheckConstraint(f"api_url ~* {HTTP_URL}", name="api_url_http"),
    sa.CheckConstraint(f"webhook_url ~* {HTTP_URL}", name="webhook_url_http"),
    # What an admin's probe must never carry along: credentials, a query, a fragment (revision 0011).
    *(
        sa.CheckConstraint(f"{column} !~ {pattern}", name=f"{column}_without_{part}")
        for column in ("api_url", "webhook_url")
        for part, pattern in (("userinfo", USERINFO), ("query", "'[?]'"), ("fragment", "'#'"))
    ),
    sa.CheckConstraint("timeout > 0", name="timeout_positive"),
    sa.CheckConstraint("timeout <= 120", name="timeout_at_most_120"),
    sa.CheckConstraint("retry_attempts >= 0", name="retry_attempts_not_negative"),
    sa.CheckConstraint("retry_attempts <= 10", name="retry_attempts_at_most_10"),
    sa.CheckConstraint("rate_limit > 0", name="rate_limit_positive"),
    sa.CheckConstraint("prioridade BETWEEN 0 AND 10", name="prioridade_range"),
    sa.CheckConstraint("max_sessions > 0", name="max_sessions_positive"),
    sa.CheckConstraint("sessions_ativas >= 0", name="sessions_ativas_not_negative"),
    comment="WAHA servers of each user (V2.1). get_available_waha_server picks among them.",
)

waha_sessions = sa.Table(
    "waha_sessions",
    metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
    sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("waha_server_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("session_name", sa.String(255), nullable=False),
    sa.Column(
        "status",
        sa.String(50),
        nullable=False,
        server_default=sa.text("'STOPPED'::character varying"),
        comment="WAHA status, free text; STOPPED, FAILED and DISCONNECTED (any case) occupy no capacity.",
    ),
    sa.Column("phone_number", sa.String(20)),
    sa.Column("profile_name", sa.String(255)),
    sa.Column("qr_code", sa.Text),
    sa.Column("last_connected_at", sa.TIMESTAMP(timezone=True)),
    sa.Column("created_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=now),
    sa.UniqueConstraint("waha_server_id", "session_name"),
    sa.ForeignKeyConstraint(["waha_server_id", "user_id"], ["waha_servers.id", "waha_servers.user_id"]),
    sa.Index("waha_sessions_user_id_idx", "user_id"),
    sa.Index("waha_sessions_waha_server_id_user_id_idx", "waha_server_id", "user_id"),
    sa.Index("waha_sessions_status_idx", "status"),
    sa.Index("waha_sessions_session_name_idx", "session_name"),
    # A session name identifies one session of its user among those occupying a slot.
    sa.Index(
        "waha_sessions_user_id_session_name_occupying_key",
        "user_id",
        "session_name",
        unique=True,
        postgresql_where=sa.text(
            "upper((status)::text) <> ALL (ARRAY['STOPPED'::text, 'FAILED'::text, 'DISCONNECTED'::text])"
        ),
    ),
    sa.CheckConstraint("session_name ~ '^[A-Za-z0-9_-]{1,54}$'", name="session_name_waha_rule"),
    comment="WhatsApp sessions on each WAHA server (V2.1).",
)

waha_server_health = sa.Table(
    "waha_server_health",
    metadata,
    sa.Column("server_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("last_checked_at", sa.TIMESTAMP(timezone=True)),
    sa.Column("last_success_at", sa.TIMESTAMP(timezone=True)),
    sa.Column("last_failure_at", sa.TIMESTAMP(timezone=True)),
    sa.Column(
        "consecutive_failures",
        sa.Integer,
        nullable=False,
        server_default=sa.text("0"),
        comment="Failures since the last success; 0 is healthy.",
    ),
    sa.Column(
        "last_error",
        sa.Text,
        comment="The last failure in plain words (e.g. connection refused, API key rejected); "
        "kept after a success, with last_failure_at.",
    ),
    sa.Column(
        "cooldown_until",
        sa.TIMESTAMP(timezone=True),
        comment="Until then the server is ranked after every healthy server: 30 s doubling per "
        "consecutive failure, capped at 10 minutes. NULL when healthy.",
    ),
    sa.Column(
        "waha_version",
        sa.Text,
        comment="The WAHA version the server last reported at /api/server/version; NULL until a probe got an answer.",
    ),
    sa.Column("waha_engine", sa.Text, comment="The engine the server last reported (WEBJS, NOWEB, GOWS...)."),
    sa.Column(
        "waha_tier", sa.Text, comment="The tier the server last reported: CORE runs a single session, PLUS many."
    ),
    sa.Column(
        "identified_at",
        sa.TIMESTAMP(timezone=True),
        comment="When the server last reported its version, engine and tier.",
    ),
    sa.Column(
        "waha_worker_id",
        sa.Text,
        comment="The WAHA worker id the server last reported at GET /api/server/status (worker.id); "
        "NULL when it reported none (empty, absent, a 404) or was never asked.",
    ),
    sa.ForeignKeyConstraint(
        ["user_id", "server_id"], ["waha_servers.user_id", "waha_servers.id"], onupdate="CASCADE", ondelete="CASCADE"
    ),
    sa.CheckConstraint("consecutive_failures >= 0", name="consecutive_failures_not_negative"),
    sa.CheckConstraint("cooldown_until IS NULL OR consecutive_failures > 0", name="cooldown_only_when_failing"),
    sa.CheckConstraint("(waha_version IS NULL) = (identified_at IS NULL)", name="identified_at_with_version"),
    sa.Index("waha_server_health_user_id_server_id_idx", "user_id", "server_id"),
    sa.Index(
        "waha_server_health_user_id_cooldown_until_idx",
        "user_id",
        "cooldown_until",
        postgresql_where=sa.text("cooldown_until IS NOT NULL"),
    ),
    comment="Health of each WAHA server, written by report_waha_server_failure / report_waha_server_success. "
    "No row: never reported, treated as healthy.",
)

waha_session_last_event = sa.Table(
    "waha_session_last_event",
    metadata,
    sa.Column("server_id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("session_name", sa.String(255), primary_key=True),
    sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column(
        "event_id",
        sa.Text,
        comment="The event's id (evt_ and a ULID, WAHA 2025 and later); NULL when the events had none.",
    ),
    sa.Column(
        "event_timestamp",
        sa.BigInteger,
        comment="The event's timestamp, milliseconds since the epoch as WAHA writes it; NULL when the events had none.",
    ),
    sa.Column("applied_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=now),
    sa.ForeignKeyConstraint(
        ["server_id", "session_name"],
        ["waha_sessions.waha_server_id", "waha_sessions.session_name"],
        onupdate="CASCADE",
        ondelete="CASCADE",
    ),
    sa.ForeignKeyConstraint(
        ["user_id", "server_id"], ["waha_servers.user_id", "waha_servers.id"], onupdate="CASCADE", ondelete="CASCADE"
    ),
    sa.CheckConstraint("length(event_id) BETWEEN 1 AND 255", name="event_id_length"),
    sa.CheckConstraint("event_timestamp >= 0", name="event_timestamp_not_negative"),
    sa.CheckConstraint("event_id IS NOT NULL OR event_timestamp IS NOT NULL", name="id_or_timestamp"),
    sa.Index("waha_session_last_event_user_id_server_id_idx", "user_id", "server_id"),
    comment="The last WAHA session.status event record_waha_session_event applied to each session (id, timestamp): "
    "what tells a duplicate or a late delivery. One row per session, deleted with it.",
)

WAHA_TABLES = ("waha_servers", "waha_sessions", "waha_server_health", "waha_session_last_event")


def include_object(
    obj: sa.schema.SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: sa.schema.SchemaItem | None
) -> bool:
    """What the drift comparison looks at: the WAHA tables in public, without the
    foreign keys to Supabase's auth.users (present only where auth.users exists).

    Alembic's include_object hook (env.py hands it to autogenerate and `alembic check`).
    """
    if isinstance(obj, sa.Table):
        return (
            obj.schema in (None, "public") and name not in UNMODELLED_TABLES and (not reflected or name in WAHA_TABLES)
        )
    if isinstance(obj, sa.ForeignKeyConstraint):
        return obj.referred_table.schema != "auth"
    return True
