"""The service scores with the weekly job's health weights: the adopted version when there is
one, else the defaults; a built Bento carries the weights adopted at build time."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from test_serving_fakes import fake_model_map

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHURNML_CONFIG_DIR", raising=False)
    return tmp_path / "home"


def _adopt_new_weights(version: str):
    from churnml.health.score import HealthScore
    from churnml.jobs.calibrate_health import adopt, health_dir

    base = HealthScore().base_config
    weights = {name: (60.0 if i == 0 else 40.0 / (len(base.dimensions) - 1))
               for i, name in enumerate(base.dimension_names)}
    HealthScore(config=base.with_weights(weights, version=version)).save(
        health_dir() / "weights-v1.yaml")
    adopt("1")


def _records(predictor, n=4):
    """Accounts with a value (0-9, within every field's bounds) for every numeric field."""
    bounds = {f.name: (f.minimum, f.maximum) for f in predictor.fields}
    rows = []
    for i in range(n):
        row = {"account_id": f"a{i}", "as_of": "2026-03-02", "plan": "starter"}
        for j, name in enumerate(predictor.numeric_fields):
            low, high = bounds.get(name, (None, None))
            value = float((i * 3 + j) % 10)
            if high is not None:
                value = min(value, float(high))
            if low is not None:
                value = max(value, float(low))
            row[name] = value
        rows.append(row)
    return [predictor.record_model.model_validate(r) for r in rows]


def test_service_uses_the_default_weights_when_none_is_adopted(home):
    from churnml.api.predictor import Predictor
    from churnml.health.score import HealthScore

    predictor = Predictor(fake_model_map())
    assert predictor.health.version == HealthScore().version
    assert predictor.metadata()["health"]["weights_source"] == "default"


def test_service_uses_the_adopted_weights_like_the_weekly_job(home):
    from churnml.api.predictor import Predictor
    from churnml.health.score import HealthScore
    from churnml.health.adopted import load_adopted_health
    from churnml.scoring.frame import score_frame

    _adopt_new_weights("2026.12-test")
    models = fake_model_map()
    predictor = Predictor(models)
    meta = predictor.metadata()["health"]
    assert meta["weights_version"] == "2026.12-test"
    assert meta["weights_source"] == "adopted weights-v1.yaml"
    records = _records(predictor)
    served = predictor.predict_records(records)
    frame = predictor.frame_from_records(records)
    batch = score_frame(frame, models, load_adopted_health(),
                        playbooks=predictor.playbooks,
                        feature_dimensions=predictor.feature_dimensions)
    np.testing.assert_allclose([r["health_score"] for r in served], batch["health_score"],
                               rtol=0, atol=1e-12)
    assert {r["health_weights_version"] for r in served} == {"2026.12-test"}
    # and the adopted weights change the scores: the test would catch the old default
    default = score_frame(frame, models, HealthScore(), playbooks=predictor.playbooks,
                          feature_dimensions=predictor.feature_dimensions)
    assert not np.allclose(default["health_score"], batch["health_score"])


def test_a_built_bento_embeds_the_adopted_weights(home, tmp_path, monkeypatch):
    from churnml.api.predictor import EMBEDDED_HEALTH_FILE, Predictor

    _adopt_new_weights("2026.12-bento")
    sys.path.insert(0, str(ROOT / "serving"))
    try:
        from build_bento import embed_health_weights
    finally:
        sys.path.remove(str(ROOT / "serving"))
    config_dir = tmp_path / "bento_src"
    shutil.copytree(ROOT / "features", config_dir / "features")
    path = embed_health_weights(config_dir / "features")
    assert path.name == EMBEDDED_HEALTH_FILE
    # served elsewhere, with another (empty) data home: the embedded weights still apply
    monkeypatch.setenv("CHURNML_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "elsewhere"))
    predictor = Predictor(fake_model_map())
    assert predictor.health.version == "2026.12-bento"
    assert predictor.metadata()["health"]["weights_source"].startswith("embedded")
