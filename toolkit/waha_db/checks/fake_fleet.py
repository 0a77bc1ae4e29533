"""Many WAHA look-alikes on 127.0.0.1 in one process, for `waha-db bench --fleet`.

One asyncio loop serves N ports, so a thousand servers cost a thousand sockets,
not a thousand threads. The kinds of server, in the order of the ports:
- ``hang``: accepts the connection, reads the request, never answers;
- ``refuse``: nothing listens on the port (connection refused);
- ``healthy``: answers as a WAHA 2026.9.1 Core server (GOWS) that is one worker of a
  shared session store, in WAHA's 2026 shapes (those of waha-py's models, as
  tests/fleet/test_fakes_contract.py checks): `GET /api/server/version` (WAHAEnvironment),
  `GET /api/server/status` (its worker id, `bench-worker-PORT`), `GET /health` (200
  `ok`) and `GET /api/sessions?all=true` (a few SessionInfo, each assigned to the
  server's worker, active now); anything else is WAHA's (NestJS's) 404.

Run as a child process: it prints one JSON line, `{"servers": [{"port", "kind"}]}`,
then serves until its standard input closes or `--lifetime` seconds have passed,
whichever comes first. So it stops by itself, even when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

KINDS = ("hang", "refuse", "healthy")
SESSIONS_PER_SERVER = 3
VERSION = {
    "version": "2026.9.1",
    "engine": "GOWS",
    "tier": "CORE",  # since 2026.6.1 the Core image runs many sessions
    "browser": "/usr/bin/chromium",
    "platform": "linux/x64",
}
HEALTH_OK = {
    "status": "ok",
    "info": {"mediaFiles.space": {"status": "up"}, "sessionsFiles.space": {"status": "up"}},
    "error": {},
    "details": {"mediaFiles.space": {"status": "up"}, "sessionsFiles.space": {"status": "up"}},
}
STARTED_MS = int(time.time() * 1000)


def kinds_for(servers: int, hang_share: float, refuse_share: float) -> list[str]:
    """The kind of each server: the first `hang_share` hang, the next `refuse_share` refuse, the rest answer."""
    hanging = round(servers * hang_share)
    refusing = round(servers * refuse_share)
    return ["hang"] * hanging + ["refuse"] * refusing + ["healthy"] * (servers - hanging - refusing)


def session_names(port: int) -> list[str]:
    """The sessions a healthy fake on `port` runs (the benchmark inserts none of them: reconcile finds them)."""
    return [f"bench-{port}-{number}" for number in range(SESSIONS_PER_SERVER)]


def worker_id(port: int) -> str:
    """The WAHA_WORKER_ID of the healthy fake on `port`: one worker per server, none shared."""
    return f"bench-worker-{port}"


def version_answer(port: int) -> dict:
    return VERSION | {"worker": {"id": worker_id(port)}}


def status_answer(port: int) -> dict:
    return {"startTimestamp": STARTED_MS, "uptime": 1000, "worker": {"id": worker_id(port)}}


def sessions_answer(port: int, now_ms: float | None = None) -> list[dict]:
    """The sessions of the fake on `port`, each active at `now_ms` (now by default)."""
    statuses = ("WORKING", "SCAN_QR_CODE", "STOPPED")
    activity = time.time() * 1000 if now_ms is None else now_ms
    return [
        {
            "name": name,
            "status": statuses[number % len(statuses)],
            "config": None,
            "me": {"id": f"55119{port:05d}{number:02d}@c.us", "pushName": f"Loja {number}"}
            if number % len(statuses) == 0
            else None,
            "assignedWorker": worker_id(port),
            "presence": {},
            "timestamps": {"activity": activity},
        }
        for number, name in enumerate(session_names(port))
    ]


def _response(status: int, document: object) -> bytes:
    body = json.dumps(document).encode()
    reason = {200: "OK", 404: "Not Found"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# asyncio keeps only weak references to the tasks of its connections: a task waiting on
# nothing else referenced would be collected, and its connection closed, so hold them here.
_CONNECTIONS: set[asyncio.Task] = set()
_NEVER: list[asyncio.Event] = []


async def _serve(kind: str, port_of: list[int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    _CONNECTIONS.add(task)
    port = port_of[0]
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if kind == "hang":
                await _NEVER[0].wait()  # never answers; ends with the process
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            path = target.split("?", 1)[0].rstrip("/")
            if path == "/api/server/version":
                writer.write(_response(200, version_answer(port)))
            elif path == "/api/server/status":
                writer.write(_response(200, status_answer(port)))
            elif path == "/health":
                writer.write(_response(200, HEALTH_OK))
            elif path == "/api/sessions":
                writer.write(_response(200, sessions_answer(port)))
            else:
                writer.write(_response(404, {"statusCode": 404, "message": f"Cannot GET {path}", "error": "Not Found"}))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, IndexError):
        pass
    finally:
        writer.close()
        _CONNECTIONS.discard(task)


def _refused_port() -> int:
    """A port where nothing listens: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def serve_fleet(kinds: list[str], lifetime: float) -> None:
    _NEVER.append(asyncio.Event())
    servers = []
    listed = []
    for kind in kinds:
        if kind == "refuse":
            listed.append({"port": _refused_port(), "kind": kind})
            continue
        port_of = [0]
        server = await asyncio.start_server(
            lambda reader, writer, kind=kind, port_of=port_of: _serve(kind, port_of, reader, writer),
            "127.0.0.1",
            0,
            backlog=64,
        )
        port_of[0] = server.sockets[0].getsockname()[1]
        servers.append(server)
        listed.append({"port": port_of[0], "kind": kind})
    print(json.dumps({"servers": listed}), flush=True)
    loop = asyncio.get_running_loop()
    closed = loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes our stdin
    await asyncio.wait({closed}, timeout=lifetime)
    # Leave at once: the hanging connections' tasks, and the thread still reading stdin
    # after a timeout, have nothing to finish.
    sys.stdout.flush()
    os._exit(0)


def _raise_open_files_limit(servers: int) -> None:
    """Room for a listening socket and an accepted connection per server: the soft limit raised to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * servers + 64
    if soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        if ceiling < wanted:
            raise SystemExit(
                f"{servers} fake servers need {wanted} open files; this account may open {hard} "
                "(ulimit -Hn): ask for fewer servers"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake WAHA servers on 127.0.0.1 for the fleet benchmark.")
    parser.add_argument("--servers", type=int, required=True)
    parser.add_argument("--hang", type=float, default=0.10)
    parser.add_argument("--refuse", type=float, default=0.05)
    parser.add_argument("--lifetime", type=float, default=1800)
    arguments = parser.parse_args()
    _raise_open_files_limit(arguments.servers)
    try:
        asyncio.run(serve_fleet(kinds_for(arguments.servers, arguments.hang, arguments.refuse), arguments.lifetime))
    except KeyboardInterrupt:
        os._exit(0)


if __name__ == "__main__":
    main()
