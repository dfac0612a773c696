"""Two fast paths of training, each against the plain code it replaced (same values, so the
same model): the monotone checks' Spearman correlation (``churnml.models.train.
spearman_with_label``, against ``pandas.Series.rank`` + ``np.corrcoef``) and the constraints
``monotone_directions`` derives from it; and the categorical codes of a string column
(``FeatureEncoder._text_codes``, against the row-by-row ``astype(str)`` lookup)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.models.train import monotone_directions, spearman_with_label


def plain_spearman(x, label) -> float:
    """The reference: what ``monotone_directions`` computed before the fast path."""
    x = pd.to_numeric(pd.Series(x), errors="coerce")
    label_rank = pd.Series(np.asarray(label, dtype="float64")).rank()
    ok = x.notna()
    if ok.sum() > 2 and x[ok].nunique() > 1 and label_rank[ok].nunique() > 1:
        return float(np.corrcoef(x[ok].rank(), label_rank[ok])[0, 1])
    return 0.0


values = st.one_of(st.none(), st.integers(-3, 3).map(float),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                   st.sampled_from([np.inf, -np.inf]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, st.booleans()), min_size=0, max_size=60))
def test_the_fast_spearman_equals_the_plain_one_on_a_binary_label(rows):
    x = np.array([np.nan if v is None else v for v, _ in rows], dtype="float64")
    y = np.array([float(b) for _, b in rows])
    fast, plain = spearman_with_label(x, y), plain_spearman(x, y)
    assert np.isfinite(fast) == np.isfinite(plain)
    if np.isfinite(plain):
        assert abs(fast - plain) < 1e-12


def test_large_tied_and_continuous_columns_agree_to_rounding():
    rng = np.random.default_rng(3)
    n = 200_000
    for x in (rng.poisson(2.0, n).astype(float), rng.normal(size=n)):
        x[rng.random(n) < 0.2] = np.nan
        y = (rng.random(n) < 0.03 + 0.02 * (np.nan_to_num(x) > 1)).astype(float)
        fast, plain = spearman_with_label(x, y), plain_spearman(x, y)
        assert fast > 0.01 and abs(fast - plain) < 1e-12


def test_other_labels_take_the_plain_path():
    x = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0])
    for y in (np.array([0.0, 2.0, 1.0, 1.0, 3.0, 2.0]), np.array([0.0, 1.0, np.nan, 1.0, 0.0, 1.0])):
        fast, plain = spearman_with_label(x, y), plain_spearman(x, y)
        assert (np.isnan(fast) and np.isnan(plain)) or fast == plain
    assert spearman_with_label(np.array([1.0, 1.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0, 1.0])) > 0
    assert spearman_with_label(np.array([1.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0])) == 0.0
    assert spearman_with_label(np.array([1.0, 2.0, 3.0]), np.zeros(3)) == 0.0
    assert spearman_with_label(np.array(["1", "x", "3", "4"], dtype=object),
                               np.array([0.0, 1.0, 1.0, 0.0])) == plain_spearman(
        np.array(["1", "x", "3", "4"], dtype=object), np.array([0.0, 1.0, 1.0, 0.0]))


def test_monotone_directions_drop_a_contradicted_direction_and_keep_the_rest():
    rng = np.random.default_rng(0)
    n = 5_000
    label = (rng.random(n) < 0.1).astype(float)
    frame = pd.DataFrame({
        "label": label,
        "up": rng.normal(size=n) + 2 * label,        # rises with churn: +1 holds
        "down": rng.normal(size=n) + 2 * label,      # catalog says -1: contradicted
        "flat": rng.normal(size=n),                  # no signal: within tolerance, kept
        "plan": rng.choice(["a", "b"], n),
    })
    specs = {"up": {"directions": {"churn": 1}}, "down": {"directions": {"churn": -1}},
             "flat": {"directions": {"churn": -1}}, "plan": {"directions": {"churn": 1}}}
    constraints, dropped = monotone_directions(frame, ["up", "down", "flat", "plan"], ["plan"],
                                               specs, "churn", tolerance=0.02)
    assert constraints == [1, 0, -1, 0]
    assert list(dropped) == ["down"] and "contradicted (Spearman +" in dropped["down"]


# ---- categorical columns encoded from their distinct values ------------------------------------
def plain_text_codes(index: pd.Index, col: pd.Series) -> np.ndarray:
    """The reference: every row through ``astype(str)`` (what FeatureEncoder.matrix did)."""
    text = col.astype("object").where(col.notna(), None)
    return index.get_indexer(text.astype(str).where(text.notna(), None))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "None", "nan", "", " a", "é"])),
                max_size=40),
       st.sampled_from(["str", "string[pyarrow]", "string[python]", "object"]))
def test_text_codes_of_a_string_column_equal_the_row_by_row_lookup(values, dtype):
    from churnml.models.model import FeatureEncoder

    encoder = FeatureEncoder(["plan", "x"], {"plan": ["a", "b", "nan", "é"]}, label="churn")
    col = pd.Series(values, dtype=dtype)
    codes = encoder._text_codes("plan", col)
    assert codes.tolist() == plain_text_codes(encoder._category_index["plan"], col).tolist()
    frame = pd.DataFrame({"plan": col, "x": np.arange(len(values), dtype=float)})
    X = encoder.matrix(frame)
    assert np.array_equal(X[:, 0], np.where(codes >= 0, codes, np.nan), equal_nan=True)
