"""The rule-based health score: dimensions, tiers, overrides, alerts and weight fitting.

``HealthScore`` (score.py) scores a feature frame; ``compute_alerts`` (alerts.py) compares two
scored weeks; ``fit_weights`` (fit.py) re-learns the dimension weights from outcomes. The rules
live in ``features/health_score.yaml`` (config.py validates them); see docs/health_score.md.
"""

from churnml.health.alerts import ALERT_ORDER, compute_alerts
from churnml.health.config import HealthConfig, load_health_config
from churnml.health.score import DIMENSION_SEPARATOR, HealthScore

__all__ = [
    "ALERT_ORDER",
    "DIMENSION_SEPARATOR",
    "HealthConfig",
    "HealthScore",
    "compute_alerts",
    "load_health_config",
]
