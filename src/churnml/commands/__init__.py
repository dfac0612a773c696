"""One module per CLI command (see churnml.cli)."""
