"""Build step besides pyproject.toml: tcpdoctor(1) is written from the commands' help texts
(tcpdoctor.cli.manpage) when the package is built, and installed as share/man/man1."""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
MAN = os.path.join("build", "man", "tcpdoctor.1")


def write_manpage() -> None:
    sys.path.insert(0, os.path.join(HERE, "src"))
    try:
        from tcpdoctor.cli import cli
        from tcpdoctor.cli.manpage import manpage

        text = manpage(cli)
    finally:
        sys.path.pop(0)
    os.makedirs(os.path.dirname(os.path.join(HERE, MAN)), exist_ok=True)
    with open(os.path.join(HERE, MAN), "w", encoding="utf-8") as fh:
        fh.write(text)


class BuildWithManpage(build_py):
    def run(self) -> None:
        write_manpage()
        super().run()


if not os.path.exists(os.path.join(HERE, MAN)):
    write_manpage()  # data_files below must name an existing file
setup(cmdclass={"build_py": BuildWithManpage},
      data_files=[("share/man/man1", [MAN])])
