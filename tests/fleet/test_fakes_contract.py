"""The fake WAHA servers answer as WAHA does: every answer, asked over HTTP, against WAHA's own contract.

- tests/fleet/fake_waha.py (the tests' fake) serves each generation's shapes: 2026's
  validate against waha-py's models (strictly: no field the model does not have,
  at any depth); 2025's and 2024's are the recorded 2024.10.8 shapes (and 2025's
  `assignedWorker`), which lack only what 2026 added.
- waha_db.checks.fake_fleet (the benchmark's fake) serves 2026's, checked the same
  way, from a real child process as the benchmark runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import typing
import urllib.error
import urllib.request

import pytest
from pydantic import BaseModel, ValidationError
from waha.generated import models

from tests.fleet import waha_shapes
from tests.fleet.waha_shapes import HealthCheck


def unknown_fields(model: type[BaseModel], data: object, where: str = "") -> list[str]:
    """The keys of `data` that `model` (and the models of its fields, at any depth) does not have."""
    if not isinstance(data, dict):
        return []
    found = []
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            found.append(f"{where}{key}")
            continue
        for inner in _models_of(field.annotation):
            for item in value if isinstance(value, list) else [value]:
                found.extend(unknown_fields(inner, item, f"{where}{key}."))
    return found


def _models_of(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        return [inner for argument in typing.get_args(annotation) for inner in _models_of(argument)]
    return []


def strictly(model: type[BaseModel], data: object) -> BaseModel:
    """`data` validated by `model`, with no field the model does not know."""
    instance = model.model_validate(data)
    assert unknown_fields(model, data) == []
    return instance


def missing(model: type[BaseModel], data: object) -> set[str]:
    try:
        model.model_validate(data)
    except ValidationError as error:
        return {".".join(str(part) for part in item["loc"]) for item in error.errors()}
    return set()


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def run_every_status(fake) -> None:
    for number, status in enumerate(fake.answers.statuses):
        fake.run_session(f"s{number}", status, phone="5511999990001" if status == "WORKING" else None, push_name="Loja")
    fake.run_session("theirs", "WORKING", worker="worker-b")


# --- the tests' fake ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "health"),
    [
        ({}, (200, "ok")),
        ({"worker": "worker-a", "health": "shutting_down"}, (503, "shutting_down")),
        ({"tier": "PLUS", "health": "error"}, (503, "error")),
    ],
)
def test_the_fake_2026_answers_validate_against_waha_py(fake_waha, options, health):
    fake = fake_waha(**options)
    run_every_status(fake)

    environment = strictly(models.WAHAEnvironment, get(fake.url + "/api/server/version")[1])
    status = strictly(models.ServerStatusResponse, get(fake.url + "/api/server/status")[1])
    code, body = get(fake.url + "/health")
    code_all, listed = get(fake.url + "/api/sessions?all=true")
    sessions = [strictly(models.SessionInfo, entry) for entry in listed]

    assert (environment.version, environment.tier, environment.worker.id) == (
        "2026.9.1",
        options.get("tier", "CORE"),
        options.get("worker", ""),
    )
    assert status.worker.id == options.get("worker", "")
    assert (code, HealthCheck.model_validate(body).status) == health
    assert code_all == 200 and {session.status.value for session in sessions} == set(waha_shapes.STATUSES_2026)
    assert {session.assignedWorker for session in sessions} == {options.get("worker") or None, "worker-b"}
    assert all(session.timestamps.activity > 0 for session in sessions)


def test_the_fake_2025_answers_are_the_recorded_shapes_with_assigned_worker(fake_waha):
    fake = fake_waha(version="2025.11.3", worker="worker-a")
    run_every_status(fake)

    version = get(fake.url + "/api/server/version")[1]
    status = strictly(models.ServerStatusResponse, get(fake.url + "/api/server/status")[1])
    listed = get(fake.url + "/api/sessions?all=true")[1]

    assert version == waha_shapes.SERVER_VERSION_2025
    assert status.worker.id == "worker-a"
    assert get(fake.url + "/health") == waha_shapes.HEALTH_REFUSED_2024  # a Core before 2026.6.1
    assert all(set(entry) == {"name", "status", "config", "me", "assignedWorker"} for entry in listed)
    assert all(missing(models.SessionInfo, entry) == {"presence", "timestamps"} for entry in listed)


def test_the_fake_2024_answers_are_the_recorded_ones(fake_waha):
    fake = fake_waha(version="2024.10.8", engine="NOWEB")
    fake.run_session("default", "STARTING")
    recorded_listing = waha_shapes.recorded("28_list_all_while_starting").json()

    assert get(fake.url + "/api/server/version")[1] == waha_shapes.recorded("04_server_version_good").json()
    status = get(fake.url + "/api/server/status")[1]
    assert set(status) == set(waha_shapes.recorded("05_server_status_good").json()) and status["worker"] == {"id": ""}
    assert get(fake.url + "/health") == waha_shapes.HEALTH_REFUSED_2024
    [entry] = get(fake.url + "/api/sessions?all=true")[1]
    assert set(entry) == set(recorded_listing[0]) and (entry["name"], entry["status"]) == ("default", "STARTING")
    assert get(fake.url + "/api/sessions")[1] == [entry]
    assert get(fake.url + "/api/nope") == (404, waha_shapes.recorded("56_unknown_route").json())


# --- the benchmark's fake -----------------------------------------------------------------------------


def test_the_benchmarks_fake_answers_validate_against_waha_py():
    fleet = subprocess.Popen(
        [sys.executable, "-m", "waha_db.checks.fake_fleet", "--servers", "2", "--hang", "0", "--refuse", "0"]
        + ["--lifetime", "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        servers = json.loads(fleet.stdout.readline())["servers"]
        for server in servers:
            url = f"http://127.0.0.1:{server['port']}"
            environment = strictly(models.WAHAEnvironment, get(url + "/api/server/version")[1])
            status = strictly(models.ServerStatusResponse, get(url + "/api/server/status")[1])
            code, health = get(url + "/health")
            sessions = [strictly(models.SessionInfo, entry) for entry in get(url + "/api/sessions?all=true")[1]]

            worker = f"bench-worker-{server['port']}"
            assert (environment.version, environment.worker.id, status.worker.id) == ("2026.9.1", worker, worker)
            assert (code, HealthCheck.model_validate(health).status) == (200, "ok")
            assert sessions and {session.assignedWorker for session in sessions} == {worker}
            assert get(url + "/api/nope")[0] == 404
    finally:
        fleet.stdin.close()
        fleet.wait(timeout=10)
        fleet.stdout.close()
