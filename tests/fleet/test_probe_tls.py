"""A WAHA behind a private CA: trusted through SSL_CERT_FILE or SSL_CERT_DIR, and only then.

The CA and the server's certificate (for localhost) are made by the test (trustme);
the HTTPS fake listens on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import subprocess

import pytest
import trustme

from waha_db.fleet.probe import probe_server
from waha_db.fleet.transport import TrustError, trusted_context


@pytest.fixture
def private_ca():
    return trustme.CA(organization_name="Company Internal CA")


@pytest.fixture
def https_waha(fake_waha, private_ca):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    private_ca.issue_cert("localhost").configure_cert(server_context)
    return fake_waha("healthy", ssl_context=server_context)


def test_a_server_signed_by_an_unknown_ca_is_a_tls_error(https_waha, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    probe = probe_server(https_waha.url, timeout=2, retry_attempts=2, backoff=0)

    assert probe.error == "TLS error: certificate verify failed: unable to get local issuer certificate"
    assert probe.attempts == 1


def test_ssl_cert_file_makes_the_private_ca_trusted(https_waha, private_ca, tmp_path, monkeypatch):
    bundle = tmp_path / "company-ca.pem"
    private_ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    probe = probe_server(https_waha.url, timeout=2, retry_attempts=0)

    assert probe.reachable, probe.error
    assert https_waha.requests[0][0] == "/api/server/version"


def test_ssl_cert_dir_makes_the_private_ca_trusted(https_waha, private_ca, tmp_path, monkeypatch):
    folder = tmp_path / "certs"
    folder.mkdir()
    private_ca.cert_pem.write_to_path(str(folder / "company-ca.pem"))
    subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))

    assert probe_server(https_waha.url, timeout=2, retry_attempts=0).reachable


def test_a_ca_for_another_host_name_does_not_make_it_trusted(fake_waha, private_ca, tmp_path, monkeypatch):
    """The certificate is checked against the URL's host name, even though the connection goes to a checked address."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    private_ca.issue_cert("waha.internal.example").configure_cert(server_context)
    server = fake_waha("healthy", ssl_context=server_context)
    bundle = tmp_path / "company-ca.pem"
    private_ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    probe = probe_server(server.url, timeout=2, retry_attempts=0)

    assert probe.error.startswith("TLS error: certificate verify failed: hostname mismatch")


def test_an_unusable_ssl_cert_file_is_an_error_that_says_what_to_do(tmp_path):
    missing = tmp_path / "nothing.pem"

    with pytest.raises(TrustError, match=f"SSL_CERT_FILE={missing}: not a readable PEM certificate"):
        trusted_context({"SSL_CERT_FILE": str(missing)})
