"""Shared fixtures live in tests/support/*; they are registered here."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.orthanc",
    "tests.support.s3",
    "tests.support.drctl_env",
]
