"""Analysis: aggregation, rules and advice over a columnar Snapshot."""
