"""The command-line reference as Markdown, generated from the argparse parsers themselves (`build_parser()`), so the
docs cannot drift from the code: the docs' build hook (docs/hooks/cli_reference.py) puts it in reference/cli.md.

One `## uebench <command>` section per command, in the parser's order (a command group such as `data` also gets one
section per action, `## uebench data list`), each with its help, its description and a table of its arguments:
the flags as `--help` spells them, the default as argparse holds it ("required" for a required one, empty for None),
and the help text.
"""

from __future__ import annotations

import argparse
import re

# a Markdown table cell: `|` would end it, `<`/`>` would open HTML, the rest would open emphasis, code or links
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_"}
_ESCAPES |= {"[": "\\[", "]": "\\]"}


def escape(text: str) -> str:
    """Text -> Markdown that shows it as it is, also inside a table cell."""
    return "".join(_ESCAPES.get(c, c) for c in re.sub(r"\s+", " ", str(text)))


def prose(text: str) -> str:
    """Help text -> Markdown: `quoted` spans become code, the rest is escaped (`escape`)."""
    parts = " ".join(str(text).split()).split("`")  # whitespace as --help shows it: one space
    if len(parts) % 2 == 0:  # an unpaired backtick: all plain text
        return escape(text)
    return "".join(code(p) if i % 2 else escape(p) for i, p in enumerate(parts))


def code(text: str) -> str:
    """Text -> an inline code span safe in a table cell (HTML, since a Markdown code span keeps a backslash)."""
    return (
        "<code>" + "".join({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;"}.get(c, c) for c in text) + "</code>"
    )


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """A parser's direct subcommands, in the order it lists them: (name, parser, one-line help)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, p, helps.get(name, "")) for name, p in action.choices.items()]
    return out


def all_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], ...]]:
    """Every command and nested action, depth first in the parser's order: (path, parser, one-line help), path as
    ("data", "list")."""
    out = []
    for name, p, help_ in subcommands(parser):
        out.append(((*prefix, name), p, help_))
        out += all_commands(p, (*prefix, name))
    return out


def documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a command's table lists: all but -h/--help, --version and the subcommand slot."""
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in parser._actions if not isinstance(a, skip) and a.help is not argparse.SUPPRESS]


def _help_text(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own %(default)s, %(choices)s, ... expansion, as --help shows it
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        try:
            text = text % params
        except (KeyError, TypeError, ValueError):
            pass
    return text


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default is None or action.default is argparse.SUPPRESS:
        return ""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction | argparse._StoreConstAction):
        return code(repr(action.default))
    if isinstance(action.default, list | tuple):
        return code(",".join(map(str, action.default)))
    return code(str(action.default))


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:  # a positional: its metavar (DIR), or its name
        return code(formatter._format_args(action, action.dest) or action.dest)
    # the flags as --help writes them ("--out OUT", "--attack-option ATTACK.KEY=VALUE, --attack-set ..."), one code
    # span per spelling so a long line breaks between them
    parts = formatter._format_action_invocation(action).split(", ")
    return ", ".join(code(p) for p in parts)


def command_markdown(path: tuple[str, ...], parser: argparse.ArgumentParser, help_: str, level: int = 2) -> str:
    """One command's section: heading, help, description, the nested actions if a group, the arguments' table (a
    choice's values show in its flags, as in --help: `--executor {serial,ray}`)."""
    lines = [f"{'#' * level} uebench {' '.join(path)}", ""]
    if help_:
        lines += [prose(help_[:1].upper() + help_[1:]) + ("" if help_.rstrip().endswith(".") else "."), ""]
    if parser.description:
        lines += [prose(parser.description), ""]
    nested = subcommands(parser)
    if nested:
        names = ", ".join(code(f"uebench {' '.join(path)} {n}") for n, _, _ in nested)
        lines += [f"Actions: {names}.", ""]
    actions = documented_actions(parser)
    if actions:
        formatter = parser._get_formatter()
        lines += ["| Argument | Default | Description |", "| --- | --- | --- |"]
        for a in actions:
            extra = ""
            if a.nargs in (argparse.ONE_OR_MORE, argparse.ZERO_OR_MORE):
                extra = " (one or more)" if a.nargs == argparse.ONE_OR_MORE else " (any number)"
            elif isinstance(a, argparse._AppendAction) and "repeatable" not in (a.help or ""):
                extra = " (repeatable)"
            lines.append(
                f"| {_invocation(a, formatter)} | {_default(a)} | {prose(_help_text(a, parser.prog))}{extra} |"
            )
        lines.append("")
    return "\n".join(lines)


def cli_reference_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference: one section per command and per nested action, in the parser's order."""
    if parser is None:
        from . import build_parser

        parser = build_parser()
    sections = [command_markdown(path, p, help_) for path, p, help_ in all_commands(parser)]
    return "\n".join(sections).rstrip() + "\n"
