"""The report of `sessions reconcile --live` (waha_db.fleet.live): what each server said and how its rows
differ, and that report in plain words, a block per server, then a summary line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from waha_db.fleet.allocation import occupies
from waha_db.fleet.live_compare import DEFAULT_SILENT_AFTER, KINDS, Comparison
from waha_db.fleet.live_waha import WahaSession
from waha_db.fleet.probe import display_api_url
from waha_db.fleet.servers import Server


@dataclass(frozen=True)
class ServerReport:
    """One server: what WAHA said (or why it could not be read), and how the database differs."""

    server: Server
    error: str | None = None  # WAHA could not be read: skipped, nothing changed
    attempts: int = 0
    waha_sessions: tuple[WahaSession, ...] = ()
    comparison: Comparison | None = None
    applied: bool = False  # the comparison is the one --apply made under lock, and its fixable differences are done
    skipped: str | None = None  # read, but --apply could not change it (why)
    worker_id: str | None = None  # this server's WAHA worker, when its sessions name workers

    @property
    def in_line(self) -> bool:
        """Read, and nothing differs (other workers' sessions, left out, are as they should be)."""
        return self.comparison is not None and all(d.left_out for d in self.comparison.differences)

    def as_json(self) -> dict[str, Any]:
        comparison = self.comparison
        return {
            "server_id": str(self.server.id),
            "nome": self.server.nome,
            "user_id": str(self.server.user_id),
            "api_url": display_api_url(self.server.api_url),
            "reachable": self.error is None,
            "error": self.error,
            "attempts": self.attempts,
            "worker_id": self.worker_id,
            "max_sessions": self.server.max_sessions,
            "sessions_ativas": self.server.sessions_ativas,
            "waha_sessions": [{"name": session.name} | session.as_json() for session in self.waha_sessions],
            "occupying": None if comparison is None else comparison.occupying,
            "differences": []
            if comparison is None
            else [difference.as_json() for difference in comparison.differences],
            "applied": self.applied,
            "skipped": self.skipped,
        }


@dataclass
class LiveReport:
    servers: list[ServerReport]
    applied: bool
    grace_seconds: float
    silent_after_minutes: float = DEFAULT_SILENT_AFTER.total_seconds() / 60

    @property
    def problems(self) -> list[ServerReport]:
        """The servers that could not be read, or not brought in line by --apply."""
        return [item for item in self.servers if item.error is not None or item.skipped is not None]

    def problems_line(self) -> str:
        """`2 of 5 server(s) not reconciled: Lento (timed out after 1 s), ...`, for the error line."""
        names = ", ".join(f"{item.server.nome} ({item.error or item.skipped})" for item in self.problems)
        return f"{len(self.problems)} of {len(self.servers)} server(s) not reconciled: {names}"

    def summary(self) -> dict[str, Any]:
        differences = [d for item in self.servers if item.comparison for d in item.comparison.differences]
        return {
            "servers": len(self.servers),
            "in_line": sum(item.in_line for item in self.servers),
            "unreachable": sum(item.error is not None for item in self.servers),
            "skipped": sum(item.skipped is not None for item in self.servers),
            "differences": {kind: sum(d.kind == kind for d in differences) for kind in KINDS},
            "fixable": sum(d.fixable for d in differences),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "grace_seconds": self.grace_seconds,
            "silent_after_minutes": self.silent_after_minutes,
            "servers": [item.as_json() for item in self.servers],
            "summary": self.summary(),
        }


def render_live_report(report: LiveReport) -> str:
    """The report as `sessions reconcile --live` prints it: a block per server, then a summary line."""
    if not report.servers:
        return "no WAHA server to reconcile: the scope holds no active server (name one with --server ID)"
    lines = []
    for item in report.servers:
        server = item.server
        lines.append(f"{server.nome} ({display_api_url(server.api_url)})  server {server.id}  user {server.user_id}")
        if item.error is not None:
            tries = f" ({item.attempts} attempts)" if item.attempts > 1 else ""
            lines.append(f"  unreachable: {item.error}{tries}; skipped: nothing read, nothing changed")
            continue
        if item.comparison is None:
            lines.append(f"  skipped: {item.skipped}")
            continue
        comparison = item.comparison
        theirs = {d.session_name for d in comparison.differences if d.kind == "other_worker"}
        own = [session for session in item.waha_sessions if session.name not in theirs]
        running = sum(occupies(session.status) for session in own)
        others = f" (and {len(theirs)} of other workers)" if theirs else ""
        worker = f"; worker {item.worker_id}" if item.worker_id else ""
        lines.append(
            f"  WAHA has {len(own)} session(s){others}, {running} occupying; "
            f"sessions_ativas {server.sessions_ativas}, max_sessions {server.max_sessions}{worker}"
        )
        if item.in_line:
            lines.append("  in line with WAHA")
        if theirs_left_out := [d for d in comparison.differences if d.left_out]:
            workers = sorted({str((d.waha or {}).get("assigned_worker")) for d in theirs_left_out})
            lines.append(
                f"  {'other_worker':<16}{len(theirs_left_out)} session(s) of worker(s) {', '.join(workers)}: "
                "left out, never inserted, counted or stopped here (--json lists them)"
            )
        for difference in comparison.differences:
            if difference.left_out:
                continue
            if not difference.fixable:
                verdict = ""
            elif item.applied:
                verdict = "done: "
            else:
                verdict = "--apply: "
            lines.append(f"  {difference.kind:<16}{difference.session_name or '':<20} {difference.detail}")
            lines.append(f"  {'':<16}{'':<20} {verdict}{difference.action}")
        if item.skipped:
            lines.append(f"  skipped: {item.skipped}")
    summary = report.summary()
    found = sum(not d.left_out for item in report.servers if item.comparison for d in item.comparison.differences)
    text = (
        f"{summary['servers']} server(s): {summary['in_line']} in line with WAHA, "
        f"{summary['servers'] - summary['in_line'] - summary['unreachable']} with {found} difference(s), "
        f"{summary['unreachable']} unreachable"
    )
    if report.applied:
        brought = summary["servers"] - summary["unreachable"] - summary["skipped"]
        text += (
            f"; applied to {brought} server(s), one transaction each ({summary['skipped']} skipped)"
            if brought
            else "; nothing applied: no server could be read and brought in line"
        )
    elif summary["fixable"]:
        text += f"; {summary['fixable']} to apply: run again with --apply (nothing is ever changed on a WAHA server)"
    lines.append(text)
    return "\n".join(lines)
