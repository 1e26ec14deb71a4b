"""Read models: projectors that turn the global event log into query-optimised tables."""
