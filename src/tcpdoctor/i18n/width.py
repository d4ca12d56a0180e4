"""Text laid out in terminal cells: a Chinese character takes two cells, and a line may break
between two of them (English is left to textwrap, as before)."""

from __future__ import annotations

import re
from typing import Any

# Characters that take two terminal cells and may be broken between (CJK), and marks that
# must not start a line (Chinese typesetting keeps them after the character they follow).
WIDE = "\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3" \
       "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6"
TOKENS = rf"\s+|[{WIDE}]|[^\s{WIDE}]+"  # compiled on first use (start-up time counts)
NO_LINE_START = set("，。、；：！？）》」』】%")
NO_LINE_END = set("（《「『【")


def pad(text: str, width: int, right: bool = False) -> str:
    """text padded to `width` terminal cells (a Chinese character takes two)."""
    from rich.cells import cell_len

    room = " " * max(0, width - cell_len(text))
    return room + text if right else text + room


def fill(text: str, width: int, first: str = "", rest: str = "",
         hyphens: bool = False) -> str:
    """Wrap to `width` terminal cells. English wraps as textwrap does; text with wide
    (CJK) characters is measured in cells and may break between them."""
    if not re.search(f"[{WIDE}]", text):
        import textwrap

        return textwrap.fill(text, width=width, initial_indent=first, subsequent_indent=rest,
                             break_on_hyphens=hyphens)
    from rich.cells import cell_len

    lines, line, used, space = [], first, cell_len(first), False
    fresh = True
    tokens = re.findall(TOKENS, text)
    for i, tok in enumerate(tokens):
        if tok.isspace():
            space = True
            continue
        gap = " " if space and not fresh else ""
        size = cell_len(tok)
        # marks that may not start a line go with the token before them (a run of them:
        # "）：" both), and an opening bracket with the token after it: room for all
        need = size + _held_with(tokens, i, cell_len)
        if not fresh and used + len(gap) + need > width and tok[0] not in NO_LINE_START:
            lines.append(line)
            line, used = rest + tok, cell_len(rest) + size
        else:
            line, used = line + gap + tok, used + len(gap) + size
        fresh, space = False, False
    lines.append(line)
    return "\n".join(lines)


def _held_with(tokens: list[str], i: int, cell_len: Any) -> int:
    """Cells of what must stay on token i's line after it."""
    extra, k = 0, i + 1
    while k < len(tokens):
        gap = 1 if tokens[k].isspace() else 0  # " ：": the mark still may not start a line
        mark = tokens[k + gap] if k + gap < len(tokens) else ""
        if not mark or mark.isspace() or mark[0] not in NO_LINE_START:
            break
        extra += gap + cell_len(mark)
        k += gap + 1
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    if not extra and after and not after.isspace() and tokens[i][-1] in NO_LINE_END:
        extra = cell_len(after)
    return int(extra)
