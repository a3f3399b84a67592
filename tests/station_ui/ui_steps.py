"""Small steps for driving a Streamlit AppTest the way a person uses the page."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def click(at: AppTest, label: str) -> AppTest:
    """Clicks the (form submit) button whose label starts with `label`, and reruns."""
    matches = [b for b in at.button if str(b.label).startswith(label)]
    labels = [b.label for b in at.button]
    assert matches, f"no button starting {label!r}; buttons: {labels}"
    matches[0].click()
    return at.run()


def click_in_form(at: AppTest, form_key: str, label: str) -> AppTest:
    """Clicks the submit button `label` of the form `form_key` (pages repeat labels), reruns."""
    matches = [b for b in at.button if b.label == label and b.form_id == form_key]
    assert matches, (
        f"no {label!r} in form {form_key!r}: {[(b.label, b.form_id) for b in at.button]}"
    )
    matches[0].click()
    return at.run()


def page_text(at: AppTest) -> str:
    """Everything the page says in markdown, subheaders, captions and alerts, as one string."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "success", "info", "warning"):
        parts.extend(str(getattr(element, "value", "")) for element in at.get(kind))
    parts.extend(str(e.value) for e in at.error)
    parts.extend(f"{m.label}: {m.value}" for m in at.metric)
    return "\n".join(parts)


def assert_no_errors(at: AppTest) -> None:
    """The run raised nothing and showed no error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
