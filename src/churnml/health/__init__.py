"""The rule-based health score: dimensions, tiers, overrides, alerts and weight fitting.

``HealthScore`` (score.py) scores a feature frame; ``fit_weights`` (fit.py) re-learns the
dimension weights from outcomes; ``adopted.load_adopted_health`` gives the weights in force.
Week-over-week alerts on the score live with the rest of scoring (``churnml.scoring.alerts``). The rules
live in ``features/health_score.yaml`` (config.py validates them); see docs/health_score.md.
"""

from churnml.health.config import HealthConfig, load_health_config
from churnml.health.score import DIMENSION_SEPARATOR, HealthScore

__all__ = [
    "DIMENSION_SEPARATOR",
    "HealthConfig",
    "HealthScore",
    "load_health_config",
]
