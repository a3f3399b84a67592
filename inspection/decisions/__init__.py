"""Decisions: eligibility policy, fraud signals and the decision engine (pure, no I/O)."""
