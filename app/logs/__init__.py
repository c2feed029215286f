"""Job logs."""
