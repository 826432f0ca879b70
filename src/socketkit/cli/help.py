"""``socketkit help [TOPIC]``: the documentation pages, from the installed package.

A pip-installed socketkit has no checkout to point at, so ``--help`` texts and messages say
``socketkit help TOPIC`` rather than ``docs/TOPIC.md``. The pages are copied into the package
(``socketkit/_docs``) when it is built (``setup.py``); an editable install or a checkout reads
the repository's ``docs/`` folder instead.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from .exit_codes import ExitStatus

SUMMARY = "show a documentation page (cli, connect, sniff, design, ...)"
DESCRIPTION = """\
Show one of socketkit's documentation pages (Markdown) on stdout; without TOPIC, list them.
The same pages are in the source repository's docs/ folder."""
EPILOG = """examples:
  socketkit help             # the list of topics
  socketkit help cli         # exit codes, errors, JSON output of every command
  socketkit help sniff | less

exit codes: 0 ok, 2 unknown topic or usage, 9 the pages are missing from this installation."""


def docs_dir() -> Path | None:
    """Where the pages are: inside the installed package, else the checkout's docs/."""
    packaged = resources.files("socketkit").joinpath("_docs")
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[3] / "docs"
    return checkout if (checkout / "cli.md").is_file() else None


def topics(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.md"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="?", metavar="TOPIC", help="a page name, e.g. cli")


def run(args: argparse.Namespace) -> int:
    folder = docs_dir()
    if folder is None:
        raise OSError(
            "the documentation pages are not installed with this copy of socketkit; "
            "reinstall it with pip, or read docs/ in the source repository"
        )
    names = topics(folder)
    if args.topic is None:
        sys.stdout.write("topics (socketkit help TOPIC):\n")
        for name in names:
            title = (folder / f"{name}.md").read_text(encoding="utf-8").partition("\n")[0]
            sys.stdout.write(f"  {name:<12} {title.lstrip('# ').strip()}\n")
        return ExitStatus.OK
    topic = args.topic.removesuffix(".md").removeprefix("docs/")
    if topic not in names:
        sys.stderr.write(f"socketkit help: no topic {args.topic!r}; topics: {', '.join(names)}\n")
        return ExitStatus.USAGE
    sys.stdout.write((folder / f"{topic}.md").read_text(encoding="utf-8"))
    return ExitStatus.OK
