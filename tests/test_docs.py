"""The documentation site: the command reference generated from the parser, and a strict build of mkdocs.yml."""

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from uebench.cli import build_parser
from uebench.cli.reference import all_commands, cli_reference_markdown, documented_actions

REPO = Path(__file__).resolve().parents[1]


def test_cli_reference_has_every_command_and_option():
    parser = build_parser()
    text = cli_reference_markdown(parser)
    headings = re.findall(r"^## uebench (.+)$", text, re.M)
    commands = [" ".join(path) for path, _, _ in all_commands(parser)]
    assert headings == commands  # every command and nested action, in the parser's order
    assert {"train", "bench", "craft", "data", "data list", "data download"} <= set(commands)
    for name in ("bench", "train"):
        section = text.split(f"## uebench {name}\n", 1)[1].split("\n## ", 1)[0]
        sub = dict((" ".join(path), p) for path, p, _ in all_commands(parser))[name]
        flags = [s for a in documented_actions(sub) for s in a.option_strings]
        assert len(flags) > 20
        for flag in flags:
            assert re.search(rf"<code>{re.escape(flag)}\b", section), (name, flag)
    bench = text.split("## uebench bench\n", 1)[1].split("\n## ", 1)[0]
    assert "<code>--preset PRESET</code> | <code>quick</code> |" in bench
    assert "<code>--out OUT</code> |  |" in bench  # default None: empty
    train = text.split("## uebench train\n", 1)[1].split("\n## ", 1)[0]
    assert "<code>--out OUT</code> | required |" in train
    assert "<code>--subset N</code>, <code>--train-subset N</code>" in train  # a renamed option: both spellings


def test_cli_reference_escapes_table_cells():
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers()
    p = sub.add_parser("go", help="run `x go` now")
    p.add_argument("--mode", default="a|b", metavar="A|B", help="a | b, <attack>@<share>, n_train=2 (%(default)s)")
    p.add_argument("--tag", action="append", help="a tag")
    p.add_argument("--hidden", help=argparse.SUPPRESS)
    text = cli_reference_markdown(parser)
    row = next(line for line in text.splitlines() if "--mode" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 4  # three cells: no pipe of the help or metavar splits one
    assert "&lt;attack&gt;@&lt;share&gt;" in row and "n\\_train=2" in row and "(a\\|b)" in row
    assert "<code>--mode A&#124;B</code>" in row and "<code>a&#124;b</code>" in row
    assert "Run <code>x go</code> now." in text
    assert "(repeatable)" in text and "--hidden" not in text


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
        pytest.skip("mkdocs/mkdocstrings not installed (pip install -e '.[docs]')")
    import yaml  # mkdocs' own dependency

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    missing = [p for p in _nav_pages(config["nav"]) if not (REPO / config["docs_dir"] / p).is_file()]
    if missing:
        pytest.skip(f"pages the nav names are not written yet: {', '.join(missing)}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        cwd=REPO,  # pymdownx.snippets' base_path "." (CHANGELOG.md) is the working directory
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli = (tmp_path / "reference/cli/index.html").read_text()
    assert 'id="uebench-bench"' in cli and "uebench-cli-reference" not in cli  # the hook replaced the marker
