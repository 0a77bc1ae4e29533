"""The suite's fixtures, loaded as plugins (as psycopg's tests load theirs): nothing is defined here.

- tests/fixtures/databases.py: the session's throwaway PostgreSQL, fresh databases of each
  kind (`url` and `engine`: one at head), and `tx`, a rolled-back transaction on each kind of
  V2.1 database;
- tests/fixtures/network.py: the network jail (only loopback resolves) and fake WAHA servers;
- tests/fixtures/cli.py: `waha_db`, the CLI run in-process, and a terminal to answer on.

What a test calls itself lives in tests/support/: the factories of rows (factories.py), the
statement and migration helpers (databases.py), the refusal assertions (assertions.py), the CLI
run in-process (cli.py).
"""

pytest_plugins = ("tests.fixtures.databases", "tests.fixtures.network", "tests.fixtures.cli")
