"""The data tcpdoctor reasons about: snapshots as columns, addresses, TCP states, kernel
figures and the snapshot file format. No I/O and nothing from the other layers."""

from tcpdoctor.model.snapshot import Snapshot

__all__ = ["Snapshot"]
