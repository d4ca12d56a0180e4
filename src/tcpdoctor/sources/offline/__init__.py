"""Saved captures: ss/netstat/Windows/proc text, raw `ss -D` dumps and tcpdoctor snapshots,
detected and parsed into a Snapshot (text streamed; huge inputs folded into weighted rows)."""

from tcpdoctor.sources.offline.captures import load_captures
from tcpdoctor.sources.offline.loader import load, merge, proc_dir_state

__all__ = ["load", "load_captures", "merge", "proc_dir_state"]
