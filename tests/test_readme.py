"""The README and the docs cannot drift from the CLI or the tree: docs/COMMANDS.md's command table
against the real `--help`, the README's `verify` output against a real `waha-db verify`, and
every relative link and file path they give against the files of the repository.

Compared, not generated (cog would write these parts instead): the table's second column is
prose no `--help` holds, and verify's output carries timings and a port that would change the
README on every run. So the test reads both and fails with what differs: a command or option
the table names that the CLI lacks, a command the CLI has that the table omits, a check
renamed, added, removed or moved, a link to a file or heading that is not there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from waha_db import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMANDS = ROOT / "docs" / "COMMANDS.md"
WAHA_DB = str(Path(sys.executable).with_name("waha-db"))
_OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def help_of(*path: str) -> str:
    result = CliRunner().invoke(cli.main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def section(help_text: str, title: str) -> list[str]:
    """The lines of one section of a --help ("Options:", "Commands:"), up to the next section."""
    lines = help_text.splitlines()
    if f"{title}:" not in lines:
        return []
    start = lines.index(f"{title}:") + 1
    end = next((i for i in range(start, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def subcommands(*path: str) -> list[str]:
    """The commands a group's --help lists; none for a command."""
    return [line.split()[0] for line in section(help_of(*path), "Commands") if re.match(r"  \S", line)]


def options(*path: str) -> set[str]:
    """Every long option a command's --help lists."""
    return {found for line in section(help_of(*path), "Options") for found in _OPTION.findall(line.split("  ")[1])}


def cli_commands(path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command (not group) of the CLI, as its --help pages list them."""
    found = []
    for name in subcommands(*path):
        below = cli_commands((*path, name))
        found.extend(below or [(*path, name)])
    return found


def table_rows(text: str | None = None) -> list[str]:
    """The first cell of each row of the table of commands (docs/COMMANDS.md, section "The table")."""
    if text is None:
        text = COMMANDS.read_text(encoding="utf-8")
    table = text[text.index("\n## The table\n") + 1 :]
    end = table.find("\n## ", 1)
    table = table if end < 0 else table[:end]
    return [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| `waha-db ")]


def table_commands(text: str | None = None) -> dict[tuple[str, ...], set[str]]:
    """Each command the table names, with the options it names for it.

    A cell holds one or more code spans: `waha-db servers update ID [...]`, then `enable ID`
    (another command of the same group), or `--user UUID [--json]` (more options of the
    command before).
    """
    named: dict[tuple[str, ...], set[str]] = {}
    for cell in table_rows(text):
        command: tuple[str, ...] = ()
        for span in re.findall(r"`([^`]+)`", cell):
            words = span.split()
            if words[0] == "waha-db":
                path: list[str] = []
                for word in words[1:]:
                    if word in subcommands(*path):
                        path.append(word)
                    else:
                        break
                command = tuple(path)
            elif words[0] in subcommands(*command[:-1]):
                command = (*command[:-1], words[0])
            named.setdefault(command, set()).update(_OPTION.findall(span))
    return named


def unknown_in_table(text: str | None = None) -> list[str]:
    """What the table names that the CLI lacks: a group taken for a command, an option a command lacks."""
    problems = []
    for command, named_options in table_commands(text).items():
        if subcommands(*command):
            problems.append(f"`waha-db {' '.join(command)}` is a group, not a command")
            continue
        unknown = named_options - options(*command)
        if unknown:
            problems.append(f"`waha-db {' '.join(command)}` has no option {', '.join(sorted(unknown))}")
    return problems


def missing_from_table(text: str | None = None) -> list[str]:
    """The commands of the CLI the table does not name."""
    listed = set(table_commands(text))
    return [" ".join(command) for command in cli_commands() if command not in listed]


def test_every_command_and_option_in_the_commands_table_exists():
    assert unknown_in_table() == []


def test_every_command_of_the_cli_is_in_the_commands_table():
    assert missing_from_table() == [], "commands the table of docs/COMMANDS.md does not name"


def test_the_table_checks_fail_on_drift():
    """A row removed, an option the CLI lacks: each is caught."""
    text = COMMANDS.read_text(encoding="utf-8")
    without_history = "\n".join(line for line in text.splitlines() if not line.startswith("| `waha-db history"))
    assert missing_from_table(without_history) == ["history"]
    renamed = text.replace("`waha-db status [--json] [--check]`", "`waha-db status [--json] [--strict]`")
    assert unknown_in_table(renamed) == ["`waha-db status` has no option --strict"]


def test_the_table_reader_sees_commands_options_and_the_group_shorthands():
    """The two tests above are only as good as this reader."""
    named = table_commands()
    assert {("servers", "enable"), ("servers", "disable"), ("servers", "remove"), ("export", "supabase")} <= set(named)
    assert named[("servers", "test")] >= {"--user", "--json"}
    assert named[("upgrade",)] == {"--owner", "--yes", "--lock-timeout", "--sql"}
    assert "--live" in named[("sessions", "reconcile")]
    assert len(cli_commands()) >= 20


# --- verify's output ----------------------------------------------------------------------------

_VERIFY_VARIES = [
    (re.compile(r"^(waha-db verify: a throwaway PostgreSQL from ).*$"), r"\1<binaries>"),
    (re.compile(r" in \d+(\.\d+)?s$"), " in <seconds>"),  # the whole run's duration
    (re.compile(r"\s+\d+(\.\d+)?s$"), ""),  # each check's duration
    (re.compile(r"PostgreSQL \d+(\.\d+)?"), "PostgreSQL <version>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
]


def verify_shape(output: str) -> list[str]:
    """verify's lines with what varies from run to run (paths, timings, versions, ports) set aside."""
    shaped = []
    for line in output.splitlines():
        for pattern, replacement in _VERIFY_VARIES:
            line = pattern.sub(replacement, line)
        if line.strip():
            shaped.append(line)
    return shaped


def readme_verify_block() -> str:
    text = README.read_text(encoding="utf-8")
    block = text[text.index("<!-- verify-output -->") : text.index("<!-- /verify-output -->")]
    lines = block.splitlines()[2:-1]  # the marker, the fence ... the closing fence
    assert lines[0] == "$ waha-db verify"
    return "\n".join(lines[1:])


def test_verify_shape_sets_aside_only_what_varies():
    line = "21 checks on throwaway PostgreSQL 15.18 on 127.0.0.1:35229: 21 passed, 0 failed in 5.2s"
    assert verify_shape(line) == [
        "21 checks on throwaway PostgreSQL <version> on 127.0.0.1:<port>: 21 passed, 0 failed in <seconds>"
    ]
    assert verify_shape("PASS  one head (0010)  0.00s") == ["PASS  one head (0010)"]
    assert verify_shape("FAIL  one head (0010)  0.00s") != verify_shape("PASS  one head (0010)  0.00s")


def test_readme_verify_output_has_the_shape_of_a_real_run():
    """A real `waha-db verify`, on the throwaway PostgreSQL it starts itself, as a user runs it."""
    done = subprocess.run([WAHA_DB, "verify"], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert verify_shape(readme_verify_block()) == verify_shape(done.stdout)


# --- links and file paths ---------------------------------------------------------------------

DOCUMENTS = [README, ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_LINK_TARGET = re.compile(r"\]\([^)\s]+\)")
# A path of the repository named in the text (`tests/lifecycle/test_catalog.py`), not a template
# (`migrations/versions/NNNN_<what>.py`) nor a path of another tree (`DIR/supabase/...`).
_REPO_PATH = re.compile(r"(?<![\w/.$<-])((?:toolkit|tests|tools|docs|migrations|sql|\.ci)/[\w./-]*)(?![<\w./-])")
_FENCE = re.compile(r"^\s*```")


def headings_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text (lower case, punctuation dropped)."""
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def broken_references(document: Path, text: str) -> list[str]:
    """Every relative link of `text` (read as `document`) to a missing file or heading, and every
    path of the repository it names that does not exist."""
    problems = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            problems.append(f"{document.name}: link {target} points to no file")
        elif anchor and linked.suffix == ".md":
            if anchor not in headings_anchors(linked.read_text(encoding="utf-8")):
                problems.append(f"{document.name}: link {target}: {linked.name} has no such heading")
    for named in _REPO_PATH.findall(_LINK_TARGET.sub("]", text)):  # a link's target is checked above
        if not (ROOT / named.rstrip(".")).exists():
            problems.append(f"{document.name}: {named} does not exist")
    return problems


def test_every_link_and_path_in_the_readme_and_docs_resolves():
    problems = [p for document in DOCUMENTS for p in broken_references(document, document.read_text(encoding="utf-8"))]
    assert problems == []


def test_the_link_check_catches_a_missing_file_heading_or_path():
    text = (
        "[gone](docs/GONE.md) [no heading](docs/COMMANDS.md#no-such-heading) `tests/nowhere.py` "
        "[fine](docs/COMMANDS.md#the-table) [web](https://example.com/x.md) `migrations/versions/NNNN_<what>.py`"
    )
    assert broken_references(README, text) == [
        "README.md: link docs/GONE.md points to no file",
        "README.md: link docs/COMMANDS.md#no-such-heading: COMMANDS.md has no such heading",
        "README.md: tests/nowhere.py does not exist",
    ]
    assert "3-taking-turns-waha-db-and-the-supabase-cli" in headings_anchors(
        "## 3. Taking turns: waha-db and the Supabase CLI"
    )
