"""The Spark engine's hand-over of the time-to-event UDF's columns to ``score_frame``
(``churnml.jobs.spark``): the UDF's result type is the output schema's time-to-event floats,
and ``PrecomputedTimeToEvent`` answers each account with its own row, in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.jobs import spark
from churnml.scoring.schema import time_to_event_floats, time_to_event_reason_columns


def test_result_type_is_the_declared_time_to_event_floats():
    floats = time_to_event_floats()
    reasons = time_to_event_reason_columns()
    assert spark.time_to_event_result_type(reasons=False) == ", ".join(f"`{c}` double" for c in floats)
    assert spark.time_to_event_result_type() == ", ".join(
        [f"`{c}` double" for c in floats] + [f"`{c}` string" for c in reasons])
    assert reasons == ["churn_timing_reasons", "expansion_timing_reasons", "contraction_timing_reasons"]
    assert "expected_days_to_churn_within_year" in floats and "churn_probability_180d" in floats


def test_time_to_event_uri_pins_the_version():
    class Model:
        version = 3

    assert spark.time_to_event_uri("7") == ("models:/churnml-time-to-event/7", "7")
    assert spark.time_to_event_uri(Model()) == ("models:/churnml-time-to-event/3", "3")


def test_precomputed_time_to_event_matches_rows_by_account():
    rng = np.random.default_rng(0)
    ids = ["b", "a", "c", "d"]
    values = pd.DataFrame(rng.random((4, 2)), columns=["churn_probability_30d",
                                                       "expected_days_to_churn_within_year"])
    model = spark.PrecomputedTimeToEvent("2", ids, values)
    assert model.version == "2"
    features = pd.DataFrame({"account_id": ["c", "a", "b"], "x": [1.0, 2.0, 3.0]})
    got = model.predict(features)
    want = values.set_index(pd.Index(ids)).loc[["c", "a", "b"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    with pytest.raises(ValueError, match="no Spark UDF score for 1 accounts"):
        model.predict(pd.DataFrame({"account_id": ["a", "zz"]}))
    with pytest.raises(ValueError, match="duplicate account ids"):
        spark.PrecomputedTimeToEvent("2", ["a", "a"], values.head(2))


def test_precomputed_time_to_event_hands_over_the_udf_timing_reasons_by_account():
    import json

    ids = ["b", "a"]
    values = pd.DataFrame({"churn_probability_30d": [0.1, 0.2]})
    reason = {"feature": "tenure_days", "value": 40.0, "contribution": 0.5,
              "text": "the account has been a customer for 40 days"}
    given = {"churn": [json.dumps([reason]), json.dumps([])],
             "expansion": [json.dumps([]), None], "contraction": [json.dumps([]), json.dumps([reason])]}
    model = spark.PrecomputedTimeToEvent("2", ids, values, given)
    got = model.timing_reasons(pd.DataFrame({"account_id": ["a", "b"]}))
    assert got == {"churn": [[], [reason]], "expansion": [[], []], "contraction": [[reason], []]}
    with pytest.raises(ValueError, match="3 timing reasons"):
        model.timing_reasons(pd.DataFrame({"account_id": ["a"]}), top_k=2)
    # a version registered before the timing reasons: the UDF gave floats only, no reasons
    old = spark.PrecomputedTimeToEvent("1", ids, values)
    assert old.timing_reasons(pd.DataFrame({"account_id": ["b"]})) == {
        "churn": [[]], "expansion": [[]], "contraction": [[]]}
