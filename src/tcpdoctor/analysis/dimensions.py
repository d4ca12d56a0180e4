"""The group-by keys, as names only (no numpy): what `top --by` accepts, what history, diff
and the exporter keep, and what `watch` cycles through. Option parsers import this."""

from __future__ import annotations

GROUP_KEYS = ("remote-ip", "remote-net", "local-port", "remote-port", "service-port", "process",
              "state", "netns", "pod")
# The dimensions history, diff and the exporter keep (what tells a cause apart), and the
# ones `watch` cycles through.
HISTORY_DIMENSIONS = ("remote-ip", "service-port", "process")
WATCH_DIMENSIONS = (*HISTORY_DIMENSIONS, "remote-net")
