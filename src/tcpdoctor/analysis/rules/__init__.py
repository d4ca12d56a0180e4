"""One rule per finding id, by pathology family; importing this package registers them
all, in the catalogue's order (docs/spec.md).

Kernel facts follow docs/kernel.md. Each rule returns what it found (or None) with the
figures that triggered it, the owners where known, and actions that start with the
application-level fix before any sysctl; the registry adds the id and title.
"""
# ruff: noqa: I001  (the import order is the registration order, which is the report order)

from tcpdoctor.analysis.rules import timewait, closing, handshake, peers, limits, memory
from tcpdoctor.analysis.rules import queues, sysctls, resets, conntrack

__all__ = ["closing", "conntrack", "handshake", "limits", "memory", "peers", "queues", "resets",
           "sysctls", "timewait"]
