"""Compare the output blocks a document quotes with the real output of a run, ignoring what legitimately varies.

A document marks each block it quotes from a tool's run with an HTML comment on the
line before the fence, `<!-- transcript: tools/NAME.py -->`. A quoted block may leave
lines out: a line `...` stands for any number of lines. Each stretch of lines between
two `...` must appear in the run's output, line for line and in order. Before the
comparison both sides are normalised: ports, uuids, pids, times, durations and the
server's version differ from run to run (a pid named in a pg_terminate_backend() too); blank lines, trailing blanks and the
`[exit 0]` a transcript prints after a command that succeeded carry nothing.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ELISION = "..."

_NORMALISE = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\b"), "<time> UTC"),
    (re.compile(r"\b\d\d:\d\d:\d\d UTC\b"), "<time> UTC"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\bpg_terminate_backend\(\d+(, \d+)*\)"), "pg_terminate_backend(<pids>)"),
    (re.compile(r"\bPostgreSQL \d+(\.\d+)?\b"), "PostgreSQL <version>"),
    (re.compile(r"\b\d+ wallclock secs \(.*\)"), "<seconds> wallclock"),
    (re.compile(r"\b\d+(\.\d+)?\s?(s|ms)\b"), "<seconds>"),
]


def normalise(line: str) -> str:
    """`line` with what varies from run to run replaced by a placeholder, trailing blanks dropped."""
    for pattern, replacement in _NORMALISE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


SUCCEEDED = "[exit 0]"


def lines_of(text: str) -> list[str]:
    """The normalised lines of `text` that carry something (not blank, not `[exit 0]`)."""
    return [normalise(line) for line in text.splitlines() if line.strip() and line.strip() != SUCCEEDED]


@dataclass(frozen=True)
class QuotedBlock:
    line: int  # where the block's fence opens in the document, 1-based
    text: str


def quoted_blocks(document: str, tool: str) -> list[QuotedBlock]:
    """The fenced blocks of `document` marked `<!-- transcript: TOOL -->` on the line before their fence."""
    marker = f"<!-- transcript: {tool} -->"
    lines = document.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() != marker:
            continue
        fence = index + 1
        if fence >= len(lines) or not lines[fence].lstrip().startswith("```"):
            raise ValueError(f"line {index + 1}: {marker} is not followed by a fenced block")
        indent = len(lines[fence]) - len(lines[fence].lstrip())
        end = next((i for i in range(fence + 1, len(lines)) if lines[i].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {fence + 1}: the block marked {marker} is never closed")
        body = [text[indent:] if text[:indent].strip() == "" else text for text in lines[fence + 1 : end]]
        blocks.append(QuotedBlock(fence + 1, "\n".join(body)))
    return blocks


def _find(stretch: list[str], output: list[str], start: int) -> int | None:
    """Where `stretch` appears in `output`, contiguous, at or after `start`; None when it does not."""
    for at in range(start, len(output) - len(stretch) + 1):
        if output[at : at + len(stretch)] == stretch:
            return at
    return None


def mismatches(block: QuotedBlock, output: str) -> list[str]:
    """What of `block` the run's `output` does not show (empty when the block is true)."""
    quoted = lines_of(block.text)
    produced = lines_of(output)
    stretches: list[list[str]] = [[]]
    for line in quoted:
        if line.strip() == ELISION:
            stretches.append([])
        else:
            stretches[-1].append(line)
    problems = []
    position = 0
    for stretch in filter(None, stretches):
        found = _find(stretch, produced, position)
        if found is None:
            matched = max(
                (k for k in range(1, len(stretch)) if _find(stretch[:k], produced, position) is not None), default=0
            )
            first = stretch[matched]
            problems.append(
                f"the block at line {block.line} quotes {len(stretch)} line(s) the run does not print in that order, "
                f"first differing: {first!r}"
            )
            continue
        position = found + len(stretch)
    return problems


def check_document(path: Path, tool: str, output: str) -> list[str]:
    """Every mismatch between the blocks of `path` marked for `tool` and the run's output; none when all hold."""
    blocks = quoted_blocks(path.read_text(encoding="utf-8"), tool)
    if not blocks:
        return [f"{path} quotes no block of {tool} (<!-- transcript: {tool} --> before a fence)"]
    return [f"{path.name}: {problem}" for block in blocks for problem in mismatches(block, output)]


def run_and_check(document: Path, tool: str, transcript: Callable[[], object], repository: Path) -> int:
    """A transcript tool's `--check`: run `transcript` with its output captured and compare the blocks of
    `document`; on a mismatch print the run and the problems. The exit status: 0 when every block holds."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        transcript()
    problems = check_document(document, tool, printed.getvalue())
    if problems:
        print(printed.getvalue())
        print("\n".join(problems), file=sys.stderr)
        print(
            f"{document.relative_to(repository)} differs from the run above: update the quoted blocks.", file=sys.stderr
        )
        return 1
    print(f"{document.relative_to(repository)}: every block quoted from {tool} matches the run")
    return 0
