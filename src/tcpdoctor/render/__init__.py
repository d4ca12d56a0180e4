"""Everything formatted for people (and CSV/JSON emission): reports, tables, diff, the
live view, rule docs. Nothing here reads the kernel or parses input."""
