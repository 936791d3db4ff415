"""Recovery analytics over the case store: the report, A/B comparisons, the recovery curve."""
