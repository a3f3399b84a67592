"""Fixtures for the decision tests: the bundled policy file, loaded and validated for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.decisions.policy import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]
BUNDLED_POLICY = REPO / "datasets" / "policy" / "returns-policy.yaml"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(BUNDLED_POLICY)
