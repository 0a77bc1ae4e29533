"""The WAHA answers the tests use (tests/fleet/waha_shapes.py) against WAHA's own contract.

The 2026 examples validate against waha-py 2026.9.x's models, generated from WAHA's
OpenAPI document; the recorded 2024.10.8 answers are shown to be what that server
sent, and where they differ from 2026's shapes. No server is started here.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import BaseModel, ValidationError
from waha.generated import models

from tests.fleet import waha_shapes
from tests.fleet.waha_shapes import HealthCheck, SessionStatusEvent
from waha_db.fleet.identity import SessionLimit, WahaIdentity, WahaVersion, parse_waha_version, session_limit

# When the recorded server answered (its Date header).
RECORDED_AT = dt.datetime(2026, 12, 6, 17, 41, 56, tzinfo=dt.timezone.utc)


def missing_fields(model: type[BaseModel], data) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}


# --- the recorded WAHA Core 2024.10.8 ----------------------------------------------------------


def test_the_recorded_server_says_it_is_core_2024_10_8_and_refuses_other_names_with_422():
    version = waha_shapes.recorded("04_server_version_good")
    second = waha_shapes.recorded("11_create_second")

    assert (version.method, version.path, version.status) == ("GET", "/api/server/version", 200)
    assert version.json() == {"version": "2024.10.8", "engine": "NOWEB", "tier": "CORE", "browser": "/usr/bin/chromium"}
    assert parse_waha_version(version.json()["version"]) == WahaVersion(2024, 10, 8)
    answer = version.json()
    identity = WahaIdentity(answer["version"], answer["engine"], answer["tier"], identified_at=RECORDED_AT)
    assert session_limit(identity) is SessionLimit.SINGLE
    assert second.status == 422 and "only 'default' session" in second.json()["message"]


def test_the_recorded_health_is_refused_as_a_plus_feature():
    health = waha_shapes.recorded("02_health_good")
    assert health.status == 422 and "Plus" in health.json()["message"]


def test_the_recorded_server_status_already_has_the_2026_shape_with_an_empty_worker_id():
    status = waha_shapes.recorded("05_server_status_good").json()
    assert models.ServerStatusResponse.model_validate(status).worker.id == ""


def test_the_recorded_sessions_lack_what_2026_added():
    (session,) = waha_shapes.recorded("28_list_all_while_starting").json()
    assert (session["name"], session["status"]) == ("default", "STARTING")
    # Besides the two fields 2026 added, the generator's object-for-enum again: waha-py types each of
    # a webhook's `events` as an object, where WAHA writes "session.status".
    assert missing_fields(models.SessionInfo, session) == {"presence", "timestamps", "config.webhooks.0.events.0"}
    assert waha_shapes.recorded("08_sessions_list_good").json() == []


def test_the_recorded_webhooks_have_neither_id_nor_timestamp():
    headers, body = waha_shapes.recorded_webhook("025")
    assert headers["User-Agent"] == "WAHA/2024.10.8" and "X-Webhook-Hmac" not in headers
    assert (body["event"], body["session"], body["payload"]["status"]) == ("session.status", "default", "STOPPED")
    assert {"id", "timestamp"} <= missing_fields(SessionStatusEvent, body)


# --- WAHA 2026, against waha-py ----------------------------------------------------------------


def test_the_2026_server_version_is_waha_py_s_environment_of_a_core_server_that_runs_many_sessions():
    environment = models.WAHAEnvironment.model_validate(waha_shapes.SERVER_VERSION_2026)
    identity = WahaIdentity(environment.version, environment.engine, environment.tier, identified_at=RECORDED_AT)
    assert environment.worker.id == waha_shapes.WORKER
    assert session_limit(identity) is SessionLimit.MANY


@pytest.mark.parametrize("answer", [waha_shapes.SERVER_STATUS_2026, waha_shapes.SERVER_STATUS_2026_NO_WORKER])
def test_the_2026_server_status_names_its_worker(answer):
    assert models.ServerStatusResponse.model_validate(answer).worker.id == answer["worker"]["id"]


def test_the_2026_sessions_are_waha_py_s_session_info_in_each_of_its_seven_statuses():
    sessions = [models.SessionInfo.model_validate(entry) for entry in waha_shapes.SESSIONS_2026]

    assert {status.value for status in models.Status} == set(waha_shapes.STATUSES_2026)
    assert {session.status.value for session in sessions} == set(waha_shapes.STATUSES_2026)
    assert {session.assignedWorker for session in sessions} == {waha_shapes.WORKER, waha_shapes.OTHER_WORKER}
    assert all(session.timestamps.activity == waha_shapes.ACTIVITY_MS for session in sessions)
    working = [session for session in sessions if session.status is models.Status.WORKING]
    assert all(session.me is not None and session.me.id.endswith("@c.us") for session in working)


@pytest.mark.parametrize(("code", "answer"), waha_shapes.HEALTH_ANSWERS_2026)
def test_the_2026_health_answers_follow_the_recorded_schema(code, answer):
    health = HealthCheck.model_validate(answer)
    assert (code == 200) == (health.status == "ok")


def test_the_health_model_is_the_recorded_openapi_schema():
    """HealthCheck above has exactly the properties of /health's 200 and 503 answers in the recorded document."""
    operation = waha_shapes.RECORDED_OPENAPI_HEALTH["get"]["responses"]
    for code in ("200", "503"):
        schema = operation[code]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == set(HealthCheck.model_fields)
        assert all(
            prop["additionalProperties"]["required"] == ["status"]
            for name, prop in schema["properties"].items()
            if name != "status"
        )


def test_the_2026_event_is_waha_py_s_session_status_webhook():
    body = waha_shapes.session_status_event_2026("cli-1", "WORKING", phone="5511999990001", push_name="Loja")
    event = SessionStatusEvent.model_validate(body)

    assert (event.id, event.session, event.payload.status) == (body["id"], "cli-1", models.Status.WORKING)
    assert event.me.id == "5511999990001@c.us" and event.environment.worker.id == waha_shapes.WORKER


def test_waha_py_types_the_event_field_as_an_object_and_nothing_else_differs():
    """The reason for SessionStatusEvent: if waha-py fixes `event`, this fails, and the override can go."""
    body = waha_shapes.session_status_event_2026("cli-1", "WORKING")
    assert missing_fields(models.WAHAWebhookSessionStatus, body) == {"event"}
