"""Shared fixtures and markers. PostgreSQL tests use a real server and a fresh database each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.postgres import DEFAULT_SERVER, fresh_database, require_postgres


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the ``postgres_url`` fixture is marked ``postgres``."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    require_postgres()
    with fresh_database(DEFAULT_SERVER, "nos_test") as url:
        yield url
