"""``churnml ui``: a read-only web workspace over the weekly partitions (``docs/ui.md``).

A top layer beside the command line's commands: it reads the output folder through
:mod:`churnml.jobs.partitions`, the schema (:mod:`churnml.scoring.schema`) and the monitoring
files, and imports nothing that writes.
"""
