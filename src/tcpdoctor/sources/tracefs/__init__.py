"""The kernel's TCP tracepoints through tracefs: a private tracing instance, events decoded
from their format files, read from the binary per-CPU ring buffers."""
