"""Chronicle's domain model: aggregates, their events and their invariants. Pure Python."""
