"""The weekly job: scoring (``scoring.score_frame``), actions, portfolio metrics, the report,
health calibration and the Spark engine."""
