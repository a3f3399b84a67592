"""Shared fixtures live in tests/fixtures/, one module per concern."""

pytest_plugins = [
    "tests.fixtures.images",
    "tests.fixtures.models",
    "tests.fixtures.database",
]
