"""The store on both databases the activities must work with: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import SQLModel

from activities.store import CaseStore


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[CaseStore]:
    """A store on a database holding none of our tables."""
    if request.param == "sqlite":
        store = CaseStore(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        # DATABASE_URL's PostgreSQL, or the suite's own (see conftest's `postgres_url`).
        store = CaseStore(request.getfixturevalue("postgres_url"))
        SQLModel.metadata.drop_all(store.engine)
    yield store
    store.engine.dispose()


@pytest.fixture
def store(empty_store: CaseStore) -> CaseStore:
    """A store with its schema created."""
    empty_store.create_schema()
    return empty_store
