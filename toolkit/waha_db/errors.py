"""The one base class of the errors whose message is written for the person running waha-db.

The library raises them with what failed, the context and what to do; the CLI prints
the message as it is (exit status 1), never a traceback, never a password.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the message explains to the user, who can act on it."""
