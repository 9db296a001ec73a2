"""The machine's PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth): one database per
test, dropped afterwards."""

from __future__ import annotations

import uuid

import psycopg
import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


def admin_connect() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    )


def create_database(prefix: str = "drctl_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with admin_connect() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def pg_database():
    """Name of a fresh, empty PostgreSQL database on 127.0.0.1:5432; dropped after the test."""
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


def pg_url(name: str, driver: str = "postgresql+psycopg") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
