"""Why a request to WAHA failed, in waha-db's own words: never the server's text.

A reason ends up in waha_server_health.last_error, which the server's user reads, and
in the reports: it is built from fixed words and numbers (a status code, a timeout,
OpenSSL's own reason), never from a header, a body or an exception's text, any of
which could quote what the server sent. waha_db.fleet.probe raises and reads these.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

import httpx


class AnswerFailure(Exception):
    """One attempt failed; `retry` says whether another attempt could do better.

    The readers of an answer raise it for one that is JSON but not WAHA's; the
    reason is always our words, never the server's text.
    """

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


# OpenSSL's own reasons (fixed words of the library, never the peer's text), as they read in a report.
_TLS_WORDS = {
    "CERTIFICATE_VERIFY_FAILED": "certificate verify failed",
    "WRONG_VERSION_NUMBER": "wrong version number (is it plain http?)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol version refused",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure",
    "UNSUPPORTED_PROTOCOL": "unsupported protocol",
}


def _tls_reason(error: ssl.SSLError) -> str:
    """A TLS failure in fixed words: OpenSSL's verification message or reason code, nothing from the peer."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_code:
        # verify_message is OpenSSL's table text for the code ("self-signed certificate", ...),
        # except for a host name mismatch, which quotes our own URL's host.
        words = str(error.verify_message or "").lower()
        return (
            f"certificate verify failed: {words}"
            if words.isascii() and len(words) < 120
            else "certificate verify failed"
        )
    reason = str(getattr(error, "reason", "") or "")
    return _TLS_WORDS.get(reason, reason.lower().replace("_", " ") if reason.isupper() else "handshake failed")


def describe_transport_error(exc: httpx.TransportError, host: str, timeout: float) -> AnswerFailure:
    """The plain-words reason for a request that got no HTTP response (fixed words, never the exception's text)."""
    causes = list(_causes(exc))
    if isinstance(exc, httpx.TimeoutException):
        return AnswerFailure(f"timed out after {timeout:g} s", retry=True)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return AnswerFailure(f"name does not resolve: {host}", retry=True)
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        return AnswerFailure(f"TLS error: {_tls_reason(tls)}", retry=False)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return AnswerFailure("connection refused", retry=True)
    if isinstance(exc, httpx.RemoteProtocolError):
        return AnswerFailure("connection closed by the server before a complete answer", retry=True)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)) or any(isinstance(c, ConnectionResetError) for c in causes):
        return AnswerFailure("connection reset by the server", retry=True)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return AnswerFailure("not an http:// or https:// URL", retry=False)
    if isinstance(exc, httpx.ConnectError):
        return AnswerFailure("cannot connect", retry=True)
    return AnswerFailure(f"request failed ({exc.__class__.__name__})", retry=True)


def check_answer(response: httpx.Response, has_api_key: bool, path: str) -> None:
    """Raise the plain-words AnswerFailure of an HTTP answer that is not a usable 200 from WAHA.

    Only the status code is read: a redirect's Location, like the body, is the
    server's text and never goes into a reason.
    """
    status = response.status_code
    if status in (401, 403):
        if has_api_key:
            reason = f"API key rejected (HTTP {status})"
        else:
            reason = f"API key rejected (HTTP {status}): the server wants an API key and none is set"
        raise AnswerFailure(reason, retry=False)
    if status >= 500:
        raise AnswerFailure(f"server error (HTTP {status})", retry=True)
    if 300 <= status < 400:
        raise AnswerFailure(
            f"redirected (HTTP {status}): not followed; set api_url to the address WAHA answers at", retry=False
        )
    if status != 200:
        raise AnswerFailure(f"not a WAHA server (HTTP {status} at {path.split('?')[0]})", retry=False)
