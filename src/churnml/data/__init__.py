"""Tables of the data contract: schemas, loading and validation, and the simulator."""
