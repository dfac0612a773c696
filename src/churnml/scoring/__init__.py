"""What the weekly job, the Spark engine and the HTTP service share: turning a feature frame
into the output rows of the one output schema.

- :mod:`churnml.scoring.schema`: the output columns, declared once (``SCHEMA_VERSION``);
- :mod:`churnml.scoring.frame`: :func:`~churnml.scoring.frame.score_frame`, the one function
  that scores accounts (probabilities of every outcome with a model, reasons, health, alerts,
  next best action, revenue columns);
- :mod:`churnml.scoring.alerts`: week-over-week alerts as a table of named rules;
- :mod:`churnml.scoring.actions`: playbooks, expansion gates and the next best action;
- :mod:`churnml.scoring.compare`: the features compared with a week before ``as_of``, read
  from the book itself (point in time), never from whether an earlier output exists;
- :mod:`churnml.scoring.queue`: expected value per action, this week's queue per owner sized
  to the team's capacity, and the stratified holdout (book-wide, run once a week is scored);
- :mod:`churnml.scoring.protocols`: the interfaces a model and a health score offer.

Layers: ``churnml.scoring`` imports ``data``, ``features``, ``health`` and ``models``, never
``jobs``, ``api`` or the command line (import-linter contracts in ``pyproject.toml``).
"""
