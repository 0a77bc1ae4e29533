"""One WAHA, one tenant: a server URL registered by more than one user is never reconciled.

WAHA has no notion of tenants: whoever holds its URL and API key sees every
session it runs, phone numbers and profile names included. `api_url` is unique
per user only, so a user could register another user's WAHA and, after an admin's
`sessions reconcile --live --apply`, find that WAHA's sessions inserted as their
own rows. So the reconcile counts, for each server, the users that registered
its normalized URL (`public.waha_normalized_url`, revision 0010: scheme and host
in lower case, no default port, no trailing slash); a URL registered by more than
one user is reported as "registered by N users" (never who) and skipped, before
WAHA is asked and again under the server's lock before anything is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

_SHARED_SQL = """
SELECT server.id, shared.users
FROM public.waha_servers AS server
JOIN (
    SELECT public.waha_normalized_url(registered.api_url) AS url, pg_catalog.count(DISTINCT registered.user_id) AS users
    FROM public.waha_servers AS registered
    GROUP BY 1
    HAVING pg_catalog.count(DISTINCT registered.user_id) > 1
) AS shared ON shared.url = public.waha_normalized_url(server.api_url)
WHERE server.id = ANY (:ids)
"""


def shared_registrations(connection: sa.Connection, server_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The servers among `server_ids` whose URL more than one user registered, and how many users did."""
    if not server_ids:
        return {}
    rows = connection.execute(sa.text(_SHARED_SQL), {"ids": list(server_ids)}).all()
    return {row.id: row.users for row in rows}


def shared_reason(users: int) -> str:
    """The report's words for a server whose URL `users` users registered (never who they are)."""
    return (
        f"registered by {users} users: one WAHA server shows every session it runs to whoever holds its URL, "
        "so its sessions are not copied to any of them; nothing read, nothing changed. Keep each WAHA server "
        "registered by one user (see docs/OPERATIONS.md, sharing a WAHA server)"
    )
