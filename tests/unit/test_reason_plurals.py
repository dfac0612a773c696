"""Reason sentences read as a CS manager would write them: singular for one, plural otherwise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from churnml.features.catalog import load_catalog, render_reason


@pytest.fixture(scope="module")
def spec():
    base = load_catalog().resolve("overdue_invoices")
    return dataclasses.replace(base, reason="{value:.0f} [invoice is|invoices are] overdue")


@pytest.mark.parametrize(
    "value, text",
    [(1, "1 invoice is overdue"), (1.0, "1 invoice is overdue"), (np.float64(1.0), "1 invoice is overdue"),
     (0, "0 invoices are overdue"), (3.0, "3 invoices are overdue")],
)
def test_plural_markers_follow_the_value(spec, value, text):
    assert render_reason(spec, value) == text


def test_no_catalog_sentence_reads_one_with_a_plural_noun():
    """Every count sentence of the catalog renders grammatically for the value 1."""
    bad = []
    for s in load_catalog():
        if isinstance(s.reason, str) and s.kind == "numeric" and "{value:.0f}" in s.reason:
            text = render_reason(s, 1.0)
            first_words = text.split("1 ", 1)[-1].split()[:2]
            if any(w in {"people", "invoices", "payments", "meetings", "champions", "escalations",
                         "tickets", "referrals", "goals", "reviews", "logins", "times", "cuts",
                         "features", "days"} for w in first_words[:1]):
                bad.append(text)
    assert not bad, bad
