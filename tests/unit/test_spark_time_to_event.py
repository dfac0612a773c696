"""The Spark engine's hand-over of the time-to-event UDF's columns to ``score_frame``
(``churnml.jobs.spark``): the UDF's result type is the output schema's time-to-event floats,
and ``PrecomputedTimeToEvent`` answers each account with its own row, in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.jobs import spark
from churnml.scoring.schema import TIME_TO_EVENT_VERSION_COLUMN, time_to_event_columns


def test_result_type_is_the_declared_time_to_event_floats():
    floats = [c for c in time_to_event_columns() if c != TIME_TO_EVENT_VERSION_COLUMN]
    assert spark.time_to_event_result_type() == ", ".join(f"`{c}` double" for c in floats)
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
