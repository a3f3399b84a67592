"""The policy file: the bundled one loads, categories inherit, bad files name the wrong key."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from inspection.decisions.policy import REQUIRED_CATEGORIES, Policy, PolicyInvalid, load_policy
from inspection.errors import InvalidInput
from inspection.grading.types import ReviewThresholds
from tests.decisions.conftest import BUNDLED_POLICY


def _raw() -> dict[str, Any]:
    return yaml.safe_load(BUNDLED_POLICY.read_text())


def test_bundled_policy_loads_with_every_category(policy: Policy) -> None:
    assert policy.version == "2026.11.1"
    assert policy.timezone == "Europe/Berlin"
    for name in REQUIRED_CATEGORIES:
        assert policy.category(name).name == name


def test_categories_inherit_missing_keys_from_default(policy: Policy) -> None:
    apparel = policy.category("apparel")
    default = policy.category("default")
    # apparel overrides only refurbish; resell and reject come from default.
    assert apparel.refund["resell"] == default.refund["resell"]
    assert apparel.refund["refurbish"].percent == 70
    assert apparel.refund["refurbish"].fixed_deductions[0].amount_cents == 300
    # Nested maps merge key by key: electronics sets only review.min_confidence.
    assert policy.review_thresholds("electronics") == ReviewThresholds(
        min_confidence=0.75, max_grade_spread=1, review_on_poor_quality=True
    )
    assert apparel.faulty_window_days == default.faulty_window_days == 730


@pytest.mark.parametrize("name", ["garden", None, "DEFAULT"])
def test_unknown_category_gets_default(policy: Policy, name: str | None) -> None:
    assert policy.category(name).name == "default"
    assert policy.review_thresholds(name) == policy.category("default").review


def test_money_limit_per_currency() -> None:
    raw = _raw()
    raw["auto_approve"]["max_value_cents"] = {"default": 50_000, "jpy": 7_000_000}
    policy = Policy.from_mapping(raw)
    assert policy.auto_approve.max_value_cents.for_currency("JPY") == 7_000_000
    assert policy.auto_approve.max_value_cents.for_currency("EUR") == 50_000


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


_DELETE = object()

# (change to the bundled file, the key the error must name, words the message must contain)
INVALID = [
    ("version", _DELETE, "version", "Field required"),
    ("timezone", "Mars/Olympus", "timezone", "unknown IANA time zone"),
    (
        "categories.apparel.window_days",
        -1,
        "categories.apparel.window_days",
        "greater than or equal to 0",
    ),
    ("categories.apparel.windw_days", 30, "categories.apparel.windw_days", "Extra inputs"),
    ("categories.electronics", _DELETE, "categories", "electronics"),
    ("categories.default.refund.reject", _DELETE, "categories.default.refund", "reject"),
    ("categories.electronics.refund.resell.percent", 120, "percent", "100"),
    ("categories.boxed.change_of_mind_grades", ["mint"], "change_of_mind_grades", "resell"),
    ("categories.boxed.faulty_window_days", 10, "categories.boxed", "faulty_window_days"),
    ("fraud.weights.photo_reuse", 1.5, "fraud.weights", "photo_reuse"),
    ("fraud.weights.swapped_item", _DELETE, "fraud.weights", "swapped_item"),
    ("fraud.weights.telepathy", 0.2, "fraud.weights", "telepathy"),
    ("fraud.always_review", ["telepathy"], "fraud.always_review", "telepathy"),
    ("fraud.review_threshold", 0, "fraud.review_threshold", "greater than 0"),
    ("auto_approve.max_value_cents", -5, "auto_approve.max_value_cents", "greater than"),
    ("auto_approve.max_value_cents", {"JPY": 5}, "auto_approve.max_value_cents", "default"),
    ("instant_refund.allowed_grades", ["perfect"], "instant_refund.allowed_grades", "resell"),
    ("faulty_reasons", ["broke_it"], "faulty_reasons", "damaged_on_arrival"),
]


@pytest.mark.parametrize(("key", "value", "named", "words"), INVALID)
def test_invalid_policy_names_the_bad_key(key: str, value: Any, named: str, words: str) -> None:
    raw = copy.deepcopy(_raw())
    _set(raw, key, value)
    with pytest.raises(PolicyInvalid) as caught:
        Policy.from_mapping(raw, source="policy file test.yaml")
    error = caught.value
    assert isinstance(error, InvalidInput)
    assert error.status_code == 422
    assert error.code == "invalid_policy"
    assert error.message.startswith("policy file test.yaml is invalid: ")
    assert named in error.message
    assert words in error.message
    assert "POLICY.md" in (error.hint or "")
    assert any(named in p["key"] for p in error.details["problems"])


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: '1'\ntimezone: Europe/Berlin\ncategories:\n  - a\n b: [\n")
    with pytest.raises(PolicyInvalid, match=r"not valid YAML at line \d+"):
        load_policy(bad)


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_policy_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(text)
    with pytest.raises(PolicyInvalid, match="must be a YAML mapping"):
        load_policy(bad)


def test_missing_file_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert "cannot be read" in caught.value.message
    assert "INSPECTION_POLICY_PATH" in (caught.value.hint or "")


def test_reload_when_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    raw = _raw()
    path.write_text(yaml.safe_dump(raw))
    first = load_policy(path)
    assert load_policy(path) is first  # cached while unchanged
    raw["version"] = "2026.12.0"
    path.write_text(yaml.safe_dump(raw))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_policy(path).version == "2026.12.0"


def test_numeric_version_is_kept_as_text() -> None:
    raw = _raw()
    raw["version"] = 2026.11
    assert Policy.from_mapping(raw).version == "2026.11"


def test_settings_default_points_at_bundled_policy() -> None:
    from inspection.settings import PolicySettings

    path = PolicySettings().path
    assert (BUNDLED_POLICY.parents[2] / path).resolve() == BUNDLED_POLICY


def test_relative_default_path_works_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_policy(Path("datasets/policy/returns-policy.yaml")).version == "2026.11.1"


def test_check_policy_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspection.cli import app

    runner = CliRunner()
    good = runner.invoke(app, ["check-policy", str(BUNDLED_POLICY)])
    assert good.exit_code == 0
    assert "policy version 2026.11.1" in good.output
    raw = _raw()
    raw["categories"]["apparel"]["window_days"] = "thirty"
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(yaml.safe_dump(raw))
    bad = runner.invoke(app, ["check-policy", str(bad_file)])
    assert bad.exit_code == 1
    assert "categories.apparel.window_days" in bad.output


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = BUNDLED_POLICY.read_text().replace(
        "  apparel:\n    window_days: 30\n",
        "  apparel:\n    window_days: 30\n    window_days: 90\n",
    )
    assert text.count("window_days: 90") == 1
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyInvalid, match="key 'window_days' appears twice") as caught:
        load_policy(path)
    assert "at line" in caught.value.message
