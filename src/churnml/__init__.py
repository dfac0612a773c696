"""churnml: churn and expansion prediction for customer-success teams."""

__version__ = "0.1.0"

SCHEMA_VERSION = "1.0"
