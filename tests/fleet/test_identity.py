"""What a WAHA server's version and tier say about the sessions it runs (pure; no server, no database)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.fleet import waha_shapes
from waha_db.fleet.identity import (
    TIERS_MERGED,
    SessionLimit,
    WahaIdentity,
    WahaVersion,
    accepts_session_name,
    capacity_warning,
    is_single_session,
    parse_waha_version,
    session_limit,
)
from waha_db.fleet.servers import Server

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)
SERVER_ID = uuid.UUID("5e1f0000-0000-4000-8000-000000000001")


def identity(version: str, tier: str | None = "CORE", engine: str | None = "GOWS") -> WahaIdentity:
    return WahaIdentity(version, engine, tier, NOW)


def server(max_sessions: int = 50) -> Server:
    return Server(
        SERVER_ID, uuid.uuid4(), "Loja", "https://waha.example", None, None, True, None, None,
        30, 3, 100, 0, max_sessions, 0, NOW, NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("2024.10.8", WahaVersion(2024, 10, 8)),  # the recorded server
        ("2026.9.1", WahaVersion(2026, 9, 1)),
        (" 2026.6.1\n", WahaVersion(2026, 6, 1)),
        ("2024.02.3", WahaVersion(2024, 2, 3)),  # YYYY.MM.BUILD, as WAHA's docs write the form
        ("v2025.11.3", WahaVersion(2025, 11, 3)),  # a git tag
        ("2026.9.1-dev", WahaVersion(2026, 9, 1)),  # a local build: the suffix does not count
        ("2026.9.1+gows", WahaVersion(2026, 9, 1)),
    ],
)
def test_versions_read_as_waha_writes_them(text, version):
    assert parse_waha_version(text) == version


@pytest.mark.parametrize(
    "text", ["YYYY.MM.BUILD", "latest", "", "2026.9", "2026.13.1", "2026.0.1", "0.0.12", "2026.9.1.4", "2026-9-1", None]
)
def test_what_is_not_a_waha_version_does_not_parse(text):
    assert parse_waha_version(text) is None


def test_versions_compare_as_released_not_as_text():
    ordered = ["2024.10.8", "2024.11.1", "2025.1.2", "2025.11.3", "2026.5.12", "2026.6.1", "2026.9.1", "2026.10.1"]
    parsed = [parse_waha_version(text) for text in ordered]
    assert parsed == sorted(parsed) and len(set(parsed)) == len(parsed)
    assert "2026.10.1" < "2026.9.1", "as text the order would be wrong"
    assert parse_waha_version("2026.6.0") < TIERS_MERGED <= parse_waha_version("2026.6.1")


@pytest.mark.parametrize(
    ("version", "tier", "limit"),
    [
        ("2026.9.1", "CORE", SessionLimit.MANY),  # Plus features ship in Core since 2026.6.1
        ("2026.6.1", "CORE", SessionLimit.MANY),
        ("2026.5.12", "CORE", SessionLimit.SINGLE),
        ("2025.11.3", "CORE", SessionLimit.SINGLE),
        ("2024.10.8", "CORE", SessionLimit.SINGLE),
        ("2024.10.8", "core", SessionLimit.SINGLE),
        ("2025.11.3", "PLUS", SessionLimit.MANY),
        ("2026.9.1", None, SessionLimit.MANY),  # the tier is not read since 2026.6.1
        ("2025.11.3", None, SessionLimit.UNKNOWN),
        ("latest", "CORE", SessionLimit.UNKNOWN),  # which side of 2026.6.1: cannot be told
        ("latest", "PLUS", SessionLimit.MANY),  # Plus always ran many
    ],
)
def test_the_version_decides_before_the_tier(version, tier, limit):
    assert session_limit(identity(version, tier)) is limit
    assert is_single_session(identity(version, tier)) is (limit is SessionLimit.SINGLE)


def test_nothing_is_known_of_a_server_never_identified():
    assert session_limit(None) is SessionLimit.UNKNOWN
    assert not is_single_session(None) and accepts_session_name(None, "cli-1")


def test_only_a_single_session_core_server_refuses_names_other_than_default():
    assert not accepts_session_name(identity("2024.10.8"), "cli-1")
    assert accepts_session_name(identity("2024.10.8"), "default")
    assert accepts_session_name(identity("2026.9.1"), "cli-1")
    assert accepts_session_name(identity("latest"), "cli-1")


def test_2026_core_with_many_sessions_gets_no_warning():
    """The server of the report: 2026.9.1 GOWS CORE with max_sessions 50 was told to go down to 1."""
    answer = waha_shapes.SERVER_VERSION_2026
    assert capacity_warning(server(50), identity(answer["version"], answer["tier"], answer["engine"])) is None
    assert capacity_warning(server(500), identity("2026.6.1")) is None


@pytest.mark.parametrize("version", ["2025.11.3", "2024.10.8"])
def test_core_before_2026_6_1_keeps_the_warning_and_its_fix(version):
    warning = capacity_warning(server(50), identity(version))

    assert warning == (
        f"Loja ({SERVER_ID}) is WAHA CORE, which runs a single session (named 'default'), but its max_sessions "
        f"is 50: selection would send it sessions it cannot run; fix: waha-db servers update {SERVER_ID} "
        "--max-sessions 1 (or upgrade it to WAHA 2026.6.1 or later, whose Core runs many sessions, or run WAHA "
        f"Plus there). WAHA {version} Core also refuses, with HTTP 422, any session not named 'default'."
    )
    assert capacity_warning(server(1), identity(version)) is None


def test_core_with_a_version_that_does_not_parse_is_told_what_is_known():
    warning = capacity_warning(server(50), identity("latest"))

    assert warning == (
        f"Loja ({SERVER_ID}) is WAHA CORE, version 'latest', which does not read as WAHA's YYYY.M.BUILD: before "
        "2026.6.1 WAHA Core runs a single session (named 'default', any other name refused with HTTP 422), since "
        "2026.6.1 it runs many; its max_sessions is 50, so whether selection would send it sessions it cannot run "
        f"is unknown; check the version it runs, and if it is older than 2026.6.1: waha-db servers update "
        f"{SERVER_ID} --max-sessions 1"
    )


def test_plus_and_unknown_tiers_get_no_warning():
    assert capacity_warning(server(50), identity("2025.11.3", "PLUS")) is None
    assert capacity_warning(server(50), identity("2025.11.3", None)) is None
    assert capacity_warning(server(50), None) is None
