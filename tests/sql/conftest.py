"""The schema's tests use the suite's fixtures (tests/fixtures/databases.py: `tx`) and factories
(tests/support/factories.py: `add_user(tx)`, `add_server`, `add_session`).

tests/fleet/conftest.py still imports three names from here, as it did when they were defined
here: `tx` and `shared_v21_databases` (the fixtures, also loaded by the plugin) and `add_user`
(now the factory, which none of the fleet's tests asks for as a fixture).
"""

from tests.fixtures.databases import shared_v21_databases, tx  # noqa: F401
from tests.support.factories import add_user  # noqa: F401
