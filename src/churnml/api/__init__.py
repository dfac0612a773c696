"""The HTTP service's logic, kept out of ``serving/`` so it is testable without BentoML.

- :mod:`churnml.api.schema`: the pydantic payload and response models, built from the feature
  catalog and the static attributes the champion models were trained with; validation errors
  name the field and the account (index and ``account_id``).
- :mod:`churnml.api.predictor`: :class:`~churnml.api.predictor.Predictor` turns validated
  records (``/predict``) or raw table rows (``/predict_history``) into the output rows of
  ``churnml.scoring.frame.score_frame``, and describes the models (``/metadata``).
- :mod:`churnml.api.auth`: the optional API key (``CHURNML_API_KEY``) as an ASGI middleware.

Only ``serving/`` imports BentoML; nothing here does.
"""
