"""The comparison of a document's quoted output with a run (tools/doc_blocks.py), without a server."""

from __future__ import annotations

import pytest

from tools.doc_blocks import QuotedBlock, mismatches, normalise, quoted_blocks

TOOL = "tools/example.py"

RUN = """\
$ waha-db --database-url postgresql+psycopg://postgres@127.0.0.1:41234/pushed status --check
database: postgresql+psycopg://postgres@127.0.0.1:41234/pushed
server: PostgreSQL 18.6
state: at head (0010)
[exit 0]

$ supabase db push --yes
Applying migration 0001...
Applying migration 0002...
Applying migration 0003...
Finished supabase db push.
[exit 0]
"""


def block(text: str) -> QuotedBlock:
    return QuotedBlock(1, text)


def test_a_block_quoted_from_another_run_matches_once_ports_and_versions_are_set_aside():
    quoted = """\
$ waha-db --database-url postgresql+psycopg://postgres@127.0.0.1:35411/pushed status --check
database: postgresql+psycopg://postgres@127.0.0.1:35411/pushed
server: PostgreSQL 15.18
state: at head (0010)
"""
    assert mismatches(block(quoted), RUN) == []


def test_an_elision_stands_for_any_lines_but_the_rest_stays_in_order():
    assert mismatches(block("Applying migration 0001...\n...\nFinished supabase db push."), RUN) == []
    out_of_order = mismatches(block("Finished supabase db push.\n...\nApplying migration 0001..."), RUN)
    assert len(out_of_order) == 1 and "'Applying migration 0001...'" in out_of_order[0]


def test_a_stretch_without_elision_must_be_contiguous():
    problems = mismatches(block("Applying migration 0001...\nFinished supabase db push."), RUN)
    assert len(problems) == 1
    assert "first differing: 'Finished supabase db push.'" in problems[0]


def test_a_changed_message_is_reported():
    problems = mismatches(block("state: at head (0009)"), RUN)
    assert problems == [
        "the block at line 1 quotes 1 line(s) the run does not print in that order, first differing: "
        "'state: at head (0009)'"
    ]


def test_a_failure_exit_is_compared_but_a_success_is_not_printed():
    assert mismatches(block("state: at head (0010)\n$ supabase db push --yes"), RUN) == []
    assert mismatches(block("state: at head (0010)\n[exit 1]"), RUN) != []


@pytest.mark.parametrize(
    ("line", "normal"),
    [
        ("id 6a7c4acd-1642-4782-a185-639c9074af48", "id <uuid>"),
        (
            "2026-12-06T19:08:29Z Backup: cooling down 30 s, until 19:08:59 UTC",
            "<time> Backup: cooling down <seconds>, until <time> UTC",
        ),
        ("upgraded to 0010 in 0.15s", "upgraded to 0010 in <seconds>"),
        ("held by pid 4242 (waha-db upgrade)", "held by pid <pid> (waha-db upgrade)"),
        (
            "Files=4, Tests=62,  1 wallclock secs ( 0.03 usr +  0.11 cusr =  0.19 CPU)",
            "Files=4, Tests=62,  <seconds> wallclock",
        ),
        ("   `20261125000001` | `20261125000001`   ", "   `20261125000001` | `20261125000001`"),
        (
            "pid 4242 (user postgres, active, in a transaction since 2026-12-06 19:40:32 UTC): SELECT pg_sleep(15)",
            "pid <pid> (user postgres, active, in a transaction since <time> UTC): SELECT pg_sleep(15)",
        ),
        (
            "end them: SELECT pg_catalog.pg_terminate_backend(4242, 4243);",
            "end them: SELECT pg_catalog.pg_terminate_backend(<pids>);",
        ),
    ],
)
def test_what_varies_from_run_to_run_is_set_aside(line, normal):
    assert normalise(line) == normal


def test_only_the_blocks_marked_for_the_tool_are_quoted_indented_ones_included():
    document = f"""\
Intro.

<!-- transcript: {TOOL} -->
```
$ one
```

```
not quoted from a run
```

- an item:

  <!-- transcript: {TOOL} -->
  ```
  $ two
  two's output
  ```

<!-- transcript: tools/other.py -->
```
$ three
```
"""
    assert quoted_blocks(document, TOOL) == [QuotedBlock(4, "$ one"), QuotedBlock(15, "$ two\ntwo's output")]


def test_a_marker_without_its_block_is_an_error():
    with pytest.raises(ValueError, match="not followed by a fenced block"):
        quoted_blocks(f"<!-- transcript: {TOOL} -->\ntext\n", TOOL)
