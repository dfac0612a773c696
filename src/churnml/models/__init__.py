"""Churn and expansion models: training, honest backtests, calibration, reasons, MLflow registry.

The Python API in one screen (see ``docs/models.md``)::

    from churnml.models.train import train_target          # features, split, fit, evaluate, backtest
    from churnml.models import registry                    # the only module that talks to MLflow

    result = train_target("data/book", "churn")            # -> TrainingResult
    result.comparison()                                    # model vs health score vs logreg vs oracle
    registration = registry.log_training(result)           # run + registered version + champion gate
    model = registry.load_champion("churn")                # -> TargetModel
    model.predict_proba(features), model.explain(features, top_k=3)

Modules: ``config`` (models/<target>.yaml), ``dataset`` (observations and the time split),
``train``, ``calibration``, ``metrics``, ``baselines``, ``explain`` (vectorised top-k reasons),
``model`` (``TargetModel``), ``pyfunc_model`` (MLflow models-from-code), ``registry``, ``plots``.
"""
