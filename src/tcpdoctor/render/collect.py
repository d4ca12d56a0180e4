"""The collect script: collect.sh with the bundle layout's tables written in, so that what
the script gathers is exactly what `analyze BUNDLE` reads (model/bundle_layout.py)."""

from __future__ import annotations

from importlib import resources

from tcpdoctor import __version__
from tcpdoctor.model import bundle_layout
from tcpdoctor.model.kernel_state import SYSCTL_CONF, SYSCTL_DIRS


def script() -> str:
    """The POSIX sh script, ready to run (`sh collect.sh`)."""
    text = resources.files("tcpdoctor.render").joinpath("collect.sh").read_text()
    values = {
        "VERSION": __version__,
        "FORMAT_NAME": bundle_layout.FORMAT_NAME,
        "FORMAT_VERSION": str(bundle_layout.VERSION),
        "DEFAULT_INTERVAL": str(bundle_layout.DEFAULT_INTERVAL),
        "MAX_SOCKET_BYTES": str(bundle_layout.MAX_SOCKET_BYTES),
        "MAX_SECONDS": str(bundle_layout.MAX_SECONDS),
        "READING_FILES": " ".join(bundle_layout.READING_FILES),
        "ONCE_FILES": " ".join(bundle_layout.ONCE_FILES),
        "SOCKET_FILES": " ".join(bundle_layout.SOCKET_FILES),
        "SYSCTL_PATHS": _wrapped(bundle_layout.SYSCTL_PATHS),
        "NETNS_SYSCTL_PATHS": _wrapped(bundle_layout.NETNS_SYSCTL_PATHS),
        "SLAB_PATTERN": "|".join(bundle_layout.SLAB),
        "SYSCTL_FILES": " ".join([*(f"{d}/*.conf" for d in SYSCTL_DIRS), SYSCTL_CONF]),
    }
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    if "@" in text.replace("$@", "").replace('"$@"', ""):
        raise AssertionError("collect.sh: a placeholder was left unfilled")
    return text


def _wrapped(words: tuple[str, ...], indent: int = 8) -> str:
    """Words joined by spaces, continued over lines of at most ~90 columns."""
    lines, line = [], ""
    for word in words:
        if line and len(line) + len(word) > 80:
            lines.append(line)
            line = ""
        line += ("" if not line else " ") + word
    lines.append(line)
    return (" \\\n" + " " * indent).join(lines)
