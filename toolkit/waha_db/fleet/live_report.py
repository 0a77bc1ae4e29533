"""`sessions reconcile --live` in plain words: a block per server, then a summary line (waha_db.fleet.live)."""

from __future__ import annotations

from waha_db.fleet.allocation import occupies
from waha_db.fleet.live import LiveReport
from waha_db.fleet.probe import display_api_url


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
