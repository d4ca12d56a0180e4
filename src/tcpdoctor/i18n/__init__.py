"""Words for people, in English or Chinese (gettext, one domain: `tcpdoctor`).

Three tools, one per need:
- `Msg(template, **params)`: a sentence made where the facts are (a rule, a parser's note).
  It *is* its English text (a str: JSON, tests and logs see English, byte for byte in every
  language) and remembers its template, so a renderer can say it in the reader's language.
- `tr(value)`: what a renderer prints: a Msg in the chosen language, anything else as is.
- `_(text)`: a fixed text an interface prints now, translated at once.

The language is chosen once, at start: --lang, then TCPDOCTOR_LANG, then LANGUAGE, LC_ALL,
LC_MESSAGES and LANG; English when nothing names Chinese.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

DOMAIN = "tcpdoctor"
LOCALEDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
LANGUAGES = {"en": "English", "zh": "中文 (简体)"}
ENV_ORDER = ("TCPDOCTOR_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


class English:
    """No catalog: every text is its own translation (and gettext is not even imported:
    start-up time counts, and most runs are in English)."""

    @staticmethod
    def gettext(message: str) -> str:
        return message


_catalog: Any = English()  # or a gettext.GNUTranslations
_language = "en"


class Msg(str):
    """A sentence with its template: English as a str, translatable when rendered."""

    template: str
    params: Mapping[str, Any]

    def __new__(cls, template: str, **params: Any) -> Msg:
        self = super().__new__(cls, _format(template, params, _english))
        self.template, self.params = template, params
        return self

    def translated(self) -> str:
        return _format(_catalog.gettext(self.template), self.params, tr, self.template)

    def __add__(self, other: str) -> Msg:
        return Cat(self, other)

    def __radd__(self, other: str) -> Msg:
        return Cat(other, self)


class Cat(Msg):
    """Pieces said one after another (a sentence and an optional clause)."""

    def __new__(cls, *parts: str) -> Cat:
        self = str.__new__(cls, "".join(str.__str__(p) for p in parts))
        self.template, self.params, self.parts = "", {}, parts
        return self

    parts: tuple[str, ...]

    def translated(self) -> str:
        return "".join(tr(p) for p in self.parts)


def joined(items: list[str], sep: str = ", ") -> str:
    """items one after another with sep between them, each said in the reader's language
    (str.join would keep only the English)."""
    parts: list[str] = []
    between = Msg(sep) if sep.strip() else sep  # ", " is said per language, a newline is not
    for i, item in enumerate(items):
        parts += [between, item] if i else [item]
    return Cat(*parts) if parts else ""


def _english(value: Any) -> Any:
    return str.__str__(value) if isinstance(value, Msg) else value


def _said(value: Any) -> Any:
    """What an error says, when it was raised with a Msg (tcpdoctor's own errors)."""
    if isinstance(value, BaseException) and len(value.args) == 1 \
            and isinstance(value.args[0], Msg):
        return value.args[0]
    return value


def _format(template: str, params: Mapping[str, Any], say: Any,
            fallback: str | None = None) -> str:
    values = {k: say(v) if isinstance(v, Msg) else v
              for k, v in ((k, _said(v)) for k, v in params.items())}
    try:
        return template.format(**values) if params else template
    except (KeyError, IndexError, ValueError):  # a broken translation: say it in English
        return (fallback or template).format(**values)


def tr(value: Any) -> Any:
    """A value as the reader should see it: a Msg in the chosen language."""
    return value.translated() if isinstance(value, Msg) and _language != "en" else value


def _(text: str) -> str:
    """A fixed text, translated now (interfaces only: the language is set by then)."""
    return _catalog.gettext(text)


def _f(template: str, **params: Any) -> str:
    """A sentence with figures, translated now (interfaces only)."""
    return str(tr(Msg(template, **params)))


def language() -> str:
    return _language


def choose(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    """en or zh: --lang (checked by its caller), then the environment's first setting that
    is not empty (a C or POSIX locale means English)."""
    if option:
        return option
    env = os.environ if environ is None else environ
    for key in ENV_ORDER:
        value = env.get(key, "")
        if value:
            first = value.split(":")[0].lower()  # LANGUAGE may list several
            return "zh" if first.startswith("zh") else "en"
    return "en"


def c_locale() -> dict[str, str]:
    """The environment for a program tcpdoctor runs and reads: the C locale, whatever the
    user's, so that its output (and its errors) parse the same everywhere."""
    env = {k: v for k, v in os.environ.items() if k != "LANGUAGE"}
    env["LC_ALL"] = "C"
    return env


def set_language(lang: str) -> None:
    """Use this language from now on, for tcpdoctor's texts and click's own."""
    global _catalog, _language
    _language = lang
    if lang == "en":
        _catalog = English()
        if "gettext" in sys.modules:  # after Chinese (tests): click's words from no catalog
            sys.modules["gettext"].textdomain("messages")
        return
    import gettext

    _catalog = gettext.translation(DOMAIN, LOCALEDIR, languages=["zh_CN"], fallback=True)
    # click asks gettext's global domain ("Usage:", "Options:", its errors): point it at this
    # catalog, and name the language for it the way gettext reads it.
    gettext.bindtextdomain(DOMAIN, LOCALEDIR)
    gettext.textdomain(DOMAIN)
    os.environ["LANGUAGE"] = "zh_CN"
