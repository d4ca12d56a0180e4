"""Text from the system (process, pod and namespace names, captures) made safe to show:
control characters and bidirectional overrides become visible escapes, as `ps` and `ss` do,
so that a name cannot move the cursor, retitle a terminal or reorder a line."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the bidirectional embedding, override and isolate marks, and
# lone surrogates (undecodable bytes kept by surrogateescape: no terminal can encode them).
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def visible(text: str) -> str:
    return UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                      else f"\\u{ord(m.group()):04x}", text)


def fit_bytes(text: str, limit: int, ellipsis: str = "...") -> str:
    """text cut to at most `limit` bytes of UTF-8, never inside a character."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    cut = raw[:max(limit - len(ellipsis), 0)].decode("utf-8", "ignore")
    return cut + ellipsis
