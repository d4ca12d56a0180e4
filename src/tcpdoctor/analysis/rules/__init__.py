"""One rule per finding id, by pathology family; importing this package registers them
all, in the catalogue's order (docs/spec.md)."""
# ruff: noqa: I001  (the import order is the registration order, which is the report order)

from tcpdoctor.analysis.rules import timewait, closing, handshake, peers, limits, sysctls

__all__ = ["closing", "handshake", "limits", "peers", "sysctls", "timewait"]
