"""Issue 16: tcpdoctor in Chinese. The catalog covers every text and only those; the language
is chosen as documented; human output is Chinese, machine output identical in every language;
a Chinese report fits 80 terminal cells."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len

from tcpdoctor.cli.catalog import Entry, catalogs, click_ids, mo_bytes, own_ids, read_po
from tcpdoctor.i18n import Cat, Msg, choose, joined, set_language, tr

DATA = Path(__file__).parents[1] / "data" / "real"
ZH = {"LANG": "zh_CN.UTF-8", "COLUMNS": "80"}
EN = {"LANG": "en_US.UTF-8", "COLUMNS": "80"}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "TCPDOCTOR_LANG")}
    return subprocess.run([sys.executable, "-m", "tcpdoctor", *args], capture_output=True,
                          text=True, env={**base, **(env or {})}, timeout=120, check=False)


def fields(text: str) -> set[str]:
    """The names a str.format template fills, and %(name)s ones (click's version text)."""
    names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    return names | set(re.findall(r"%\((\w+)\)", text))


@pytest.fixture(scope="module")
def po() -> list[Entry]:
    [path] = catalogs()
    return [e for e in read_po(path) if e.msgid]


def test_every_text_of_tcpdoctor_has_a_translation_and_none_is_stale(po: list[Entry]) -> None:
    want = own_ids()
    have = {e.key: e for e in po}
    missing = [k for k in want if k not in have or not (have[k].msgstr
                                                         or any(have[k].plural_strs))]
    stale = [k for k in have if k not in want and not have[k].from_click]
    assert not missing, f"{len(missing)} texts without a translation: {missing[:5]}"
    assert not stale, f"{len(stale)} translations of texts no longer used: {stale[:5]}"


def test_clicks_texts_users_see_are_translated(po: list[Entry]) -> None:
    """click's texts are bounded by what tcpdoctor's screens show: every click text that
    appears in a command's English --help or in its usage errors is translated, whatever
    the click release (a text a newer click adds elsewhere cannot fail this)."""
    have = {e.key for e in po if e.msgstr or any(e.plural_strs)}
    screens = "".join(p.stdout + p.stderr for p in (run(*args, env=EN) for args in (
        ["--help"], ["check", "--help"], ["analyze", "--help"], ["top", "--help"],
        ["states", "--bogus"], ["top", "--by"], ["top", "--by", "nothing"], ["bogus"])))
    shown = [k for k in click_ids() if "\0" not in k and "{" not in k and "%" not in k
             and len(k) > 3 and k in screens]
    assert "Usage:" in screens and shown  # the check looks at something
    untranslated = [k for k in shown if k not in have]
    assert not untranslated, untranslated


def test_translations_fill_only_their_texts_placeholders(po: list[Entry]) -> None:
    bad = []
    for e in po:
        allowed = fields(e.msgid) | fields(e.plural or "")
        for said in [e.msgstr, *e.plural_strs]:
            if said and not fields(said) <= allowed:
                bad.append((e.msgid, sorted(fields(said) - allowed)))
    assert not bad, bad[:5]


def test_help_texts_keep_their_unwrapped_blocks(po: list[Entry]) -> None:
    # click keeps a paragraph after a \b line as written (examples): so must the translation
    bad = [e.msgid[:40] for e in po if e.msgid.count("\b") != e.msgstr.count("\b")]
    assert not bad, bad


def test_the_compiled_catalog_is_its_po() -> None:
    [path] = catalogs()
    assert Path(path[:-3] + ".mo").read_bytes() == mo_bytes(read_po(path))


@pytest.mark.parametrize(("option", "environ", "expected"), [
    (None, {}, "en"),
    (None, {"LANG": "zh_CN.UTF-8"}, "zh"),
    (None, {"LANG": "zh_TW.UTF-8"}, "zh"),
    (None, {"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}, "en"),
    (None, {"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
    (None, {"LANGUAGE": "zh_CN:en", "LANG": "en_US.UTF-8"}, "zh"),
    (None, {"TCPDOCTOR_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
    (None, {"TCPDOCTOR_LANG": "zh", "LANG": "C"}, "zh"),
    ("en", {"TCPDOCTOR_LANG": "zh"}, "en"),
    (None, {"LANG": "de_DE.UTF-8"}, "en"),
])
def test_language_choice(option: str | None, environ: dict[str, str], expected: str) -> None:
    assert choose(option, environ) == expected


@pytest.fixture
def chinese() -> Iterator[None]:
    set_language("zh")
    try:
        yield
    finally:
        set_language("en")
        os.environ.pop("LANGUAGE", None)


def test_a_msg_is_its_english_text_and_is_said_in_chinese_when_rendered(chinese: None) -> None:
    note = Msg("{n:,} events lost (ring-buffer overrun)", n=12345)
    assert note == "12,345 events lost (ring-buffer overrun)"
    assert json.dumps({"note": note}) == '{"note": "12,345 events lost (ring-buffer overrun)"}'
    assert tr(note) == "丢失了 12,345 个事件（环形缓冲区溢出）"
    # pieces said one after another, a Msg inside a Msg, a list
    said = Msg("not in the input") + "; " + Msg("no warning")
    assert isinstance(said, Cat) and said == "not in the input; no warning"
    assert tr(said) == "输入中没有; 无告警"
    outer = Msg("note: {note}", note=Msg("not in the input"))
    assert tr(outer) == "注意：输入中没有"
    assert tr(joined([Msg("send"), Msg("receive")])) == "发送，接收"
    assert tr(Msg("a text no catalog has")) == "a text no catalog has"


def widest(text: str) -> int:
    return max(cell_len(line) for line in text.splitlines())


@pytest.mark.parametrize("command", ["", "check", "trace", "tune", "watch", "analyze", "top",
                                     "states", "history", "collect", "exporter"])
def test_help_is_chinese_with_clicks_own_words(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    zh, en = run(*args, env=ZH).stdout, run(*args, env=EN).stdout
    assert zh.startswith("用法：") and "选项" in zh and "显示此帮助并退出。" in zh
    if not command:
        assert "找出这台服务器 TCP 连接数暴增的原因" in zh
    # wrapped in 80 cells; example blocks are kept as written, as in English
    assert widest(zh) <= max(80, widest(en))


def test_lang_en_under_a_chinese_locale_and_an_unknown_lang() -> None:
    assert "Usage:" in run("--lang", "en", "--help", env=ZH).stdout
    assert "Usage:" in run("states", "--help", "--lang=en", env=ZH).stdout
    bad = run("--lang", "fr", "states", env=ZH)
    assert bad.returncode == 3 and bad.stdout == ""
    assert "en (English), zh (中文 (简体))" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_errors_are_chinese_one_line_exit_3() -> None:
    proc = run("analyze", "/nonexistent/capture.txt", env=ZH)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "没有那个文件或目录" in proc.stderr or "No such file" in proc.stderr
    option = run("states", "--bogus", env=ZH)
    assert option.returncode == 3 and "没有 '--bogus' 这个选项" in option.stderr


# What may stay English in a Chinese report: commands, ids and state names, keys and paths,
# numbers, addresses, process names. Four English words in a row are a sentence left over.
KEPT = re.compile(r"`[^`]*`|\S*[\d_/=:.@\[\]<>*-]\S*|\b[A-Z][A-Z0-9]+\b")
SENTENCE = re.compile(r"[A-Za-z]{2,}(?:[ ,]+[A-Za-z]{2,}){3,}")


def english_left(report: str) -> list[str]:
    return [line for line in report.splitlines()
            if SENTENCE.search(KEPT.sub(" ", line.split(" · ")[0] if "tcpdoctor " in line
                                        else line))]


REAL = ["pages-adib-synflood-netstat-ptuan.txt", "pages-xfxia-netstat-anp.txt",
        "jc-windows-10__netstat-aonb.txt", "github-md-netstat-nao-zh-locale.txt",
        "jc-osx-10.14.6__netstat-An.txt", "pages-mylazyadmin-ss-wrapped-syn-recv.txt"]


@pytest.mark.parametrize("name", REAL)
def test_analyze_of_real_captures_json_identical_report_chinese(name: str) -> None:
    path = str(DATA / name)
    # thresholds lowered to the captures' size, so that findings appear
    low = ["--threshold", "SYN_FLOOD.warning=5", "--threshold", "CLOSE_WAIT_LEAK.warning=2"]
    en, zh = run("analyze", path, "--json", *low, env=EN), run("analyze", path, "--json",
                                                                 *low, env=ZH)
    assert en.returncode == zh.returncode and en.stdout == zh.stdout
    report = run("analyze", path, *low, env=ZH)
    assert report.returncode == en.returncode
    assert "个 TCP 套接字" in report.stdout and "结果：" in report.stdout
    assert not english_left(report.stdout), english_left(report.stdout)
    assert max(cell_len(line) for line in report.stdout.splitlines()) <= 80


def test_the_english_detector_finds_a_sentence_left_in_english() -> None:
    assert english_left("  3,000 个 TIME_WAIT 套接字：the server closes each connection first.")
    assert english_left("警告 TIME_WAIT_SERVER_CLOSE — The server closes many short connections")
    assert not english_left("  证据：服务端侧 TIME_WAIT 数=3,000 · 端口=8080: 3,000 · "
                            "`ss -tanm` · td-web (pid 42) · HTTP keep-alive")


def test_every_program_tcpdoctor_runs_gets_the_c_locale() -> None:
    import ast

    package = Path(__file__).parents[2] / "src" / "tcpdoctor"
    bare = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "subprocess"
                    and node.func.attr in ("run", "Popen", "call", "check_output")):
                env = [k.value for k in node.keywords if k.arg == "env"]
                if not env or "c_locale" not in ast.unparse(env[0]):
                    bare.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not bare, bare
    collect = (package / "render" / "collect.sh").read_text()
    assert "LC_ALL=C" in collect and "export LC_ALL" in collect


def test_chinese_wrapping_never_passes_the_width() -> None:
    """Marks that may not start a line ("）：", " ：") stay on the line before without
    pushing it past the width: the characters before them move down instead."""
    import random

    from tcpdoctor.i18n.width import fill

    rng = random.Random(20261203)
    han = "的个连接持有对端不肯接收数据零窗口"
    pieces = ["（零窗口）：", "）", "，", "：", "。", "（", "%"]
    latin = ["td-x", "(pid 1234)", "44.3 MB", "198.18.0.2:9092"]
    for _ in range(3000):
        text = "".join(rng.choice(han) if (r := rng.random()) < 0.6 else
                       rng.choice(pieces) if r < 0.75 else f" {rng.choice(latin)} "
                       for _ in range(rng.randint(5, 60)))
        out = fill(text, 40, "  ", "    ")
        assert max(cell_len(line) for line in out.splitlines()) <= 40, out
