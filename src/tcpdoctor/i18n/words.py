"""Words tcpdoctor prints from a variable (a column, a side of a comparison, who closed
first, a page heading): listed here so that the catalog covers them (catalog.wanted reads
this, and the groupings of analysis.dimensions)."""

from __future__ import annotations

COLUMNS = ("state", "count", "share", "memory", "fds", "total", "established",
           "non_established", "namespace", "pod", "container", "states", "other", "sockets",
           "time", "non_estab", "findings", "before", "after", "change", "mean before",
           "mean after", "max after")
# trace: who closed a connection first, why a connect failed
OUTCOMES = ("local", "remote", "reset", "aborted", "refused", "timeout")
# punctuation between the parts of a sentence put together from pieces
PUNCTUATION = (", ", "; ", ".", ":", " ({parts})")
# the history page: its headings, and the words its script writes (history/html.py)
PAGE_HEADINGS = ("tcpdoctor history", "Sockets per state",
                 "Kernel memory held by the sockets (MB)",
                 "Kernel TCP memory of the whole host, all namespaces (MB, sockstat)", "Findings",
                 "Largest non-ESTABLISHED owners (process)", "Largest non-ESTABLISHED remotes",
                 "Largest non-ESTABLISHED service ports")
PAGE_SCRIPT = ("nothing to show in this period", "no findings in this period", "group",
               "sum over samples", "peak", "host", "samples")
# evidence keys the registry or a rule adds outside the rule's own dict literal
EVIDENCE = ("cost", "local_ports",
            # keys inside list items (listeners, resets, processes)
            "port", "queue", "limit", "reason", "peer", "pid")
SEVERITIES = ("CRITICAL", "WARNING", "INFO")
WORDS = (*PAGE_HEADINGS, *PAGE_SCRIPT, *COLUMNS, *OUTCOMES, *PUNCTUATION, *EVIDENCE, *SEVERITIES)
