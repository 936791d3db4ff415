"""The suite's own PostgreSQL: what the store tests use when DATABASE_URL is unset."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.support.harness import postgres_for_tests


def test_without_database_url_the_suite_starts_postgres_16_and_stops_it(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with postgres_for_tests() as url:
        engine = create_engine(url)
        with engine.connect() as connection:
            version = int(connection.execute(text("SHOW server_version_num")).scalar_one())
        engine.dispose()
    assert url.startswith("postgresql+psycopg://")
    assert version // 10000 == 16  # pgserver's, not a system server
    with pytest.raises(OperationalError):
        create_engine(url).connect()


@pytest.mark.parametrize(
    "database_url",
    ["postgresql+psycopg://ops@db.internal:5432/dunning", "postgresql://ops@db.internal/dunning"],
)
def test_a_postgresql_database_url_is_used_as_it_is(monkeypatch, database_url):
    monkeypatch.setenv("DATABASE_URL", database_url)
    with postgres_for_tests() as url:
        assert url == database_url
