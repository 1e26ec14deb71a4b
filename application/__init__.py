"""Use cases: commands decided against aggregates, saved to the event store in groups."""
