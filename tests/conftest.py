"""Shared fixtures and markers. PostgreSQL tests use a real server and a fresh database each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.postgres import DEFAULT_SERVER, fresh_database, require_postgres

#: Fixtures that start a server process (tests using them are marked ``subprocess``).
SPAWNING_FIXTURES = {"s3_endpoint"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that uses the ``postgres_url`` fixture ``postgres``, and every test
    that uses a fixture of :data:`SPAWNING_FIXTURES` ``subprocess``."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "postgres_url" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if fixtures & SPAWNING_FIXTURES:
            item.add_marker(pytest.mark.subprocess)


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    require_postgres()
    with fresh_database(DEFAULT_SERVER, "nos_test") as url:
        yield url
