"""Every command's --help is its docstring and ends with an Example: block; exit codes are documented."""

from __future__ import annotations

import click

from waha_db import cli


def commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_main_help_documents_the_exit_status(waha_db):
    result = waha_db(None, "--help")
    assert result.exit_code == 0
    assert "Exit status:\n    0  success\n    1  any failure" in result.output
    assert "    2  a usage error" in result.output


def test_every_command_help_has_an_example(waha_db):
    names = []
    for path, _ in commands(cli.main):
        result = waha_db(None, *path, "--help")
        assert result.exit_code == 0, path
        assert "Example:" in result.output, f"waha-db {' '.join(path)} --help has no Example: block"
        names.append(" ".join(path))
    assert {
        "upgrade",
        "downgrade",
        "status",
        "adopt",
        "history",
        "sql",
        "verify",
        "servers list",
        "servers best",
    } <= set(names)
