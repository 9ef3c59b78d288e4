"""The command line: a thin layer over the public API. One module per command group, each with
`register(subparsers)` adding its commands; a command is `fn(args) -> int`.

Bad input anywhere raises UserError, printed here as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

from ..core.errors import UserError, did_you_mean

# Command modules, in the order `uebench --help` lists them.
COMMAND_MODULES = [
    "train",
    "data",
    "craft",
    "defenses",
    "catalog",
    "metrics",
    "bench",
    "sweep",
    "crosstask",
    "landscape",
]


class _Parser(argparse.ArgumentParser):
    # no prefix matching: it let `bench --seed 3` mean `--seeds 3` (seeds 0, 1 and 2); a flag is typed whole
    def __init__(self, *args, **kw):
        kw["allow_abbrev"] = False
        super().__init__(*args, **kw)

    def error(self, message: str):  # argparse prints usage + message; we want one line and exit 2
        raise UserError(f"{self.prog}: {message}")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, and an unrecognised flag is named by the command that got it, with the closest flag that
        command takes ('bench --seed 3': did you mean '--seeds'?)."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            leaf = self._leaf(ns)
            flags = [o for a in leaf._actions for o in a.option_strings if o.startswith("--")]
            typed = [e.split("=", 1)[0] for e in extra if e.startswith("--")]
            hint = next((h for t in typed if (h := did_you_mean(t, flags))), "")
            raise UserError(f"{leaf.prog}: unrecognized arguments: {' '.join(extra)}{hint}")
        return ns

    def _leaf(self, ns: argparse.Namespace) -> argparse.ArgumentParser:
        """The (sub)command parser the namespace's chosen commands lead to."""
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                chosen = a.choices.get(getattr(ns, a.dest, None) or "")
                if chosen is not None:
                    return chosen._leaf(ns) if isinstance(chosen, _Parser) else chosen
        return self


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="uebench", description="How unlearnable are unlearnable examples, really?")
    parser.add_argument("--version", action="version", version=f"uebench {__version__}")
    parser.add_argument(
        "--plugin",
        action=_LoadPlugin,
        metavar="MODULE",
        help="import a module (dotted name or .py file) that registers attacks, defenses, models, datasets or "
        "recipes, before the command runs (repeatable; also after the command; see also $UEBENCH_PLUGINS and the "
        "'uebench.plugins' entry points)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    leaves = list(sub.choices.values())
    while leaves:  # every command (and a group's actions) also takes --plugin after its name, not listed in its help
        p = leaves.pop()
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        leaves += [c for a in nested for c in a.choices.values()]
        if not nested:
            p.add_argument("--plugin", action=_LoadPlugin, metavar="MODULE", help=argparse.SUPPRESS)
    return parser


class _LoadPlugin(argparse.Action):
    """--plugin MODULE: loads it as it is parsed, so before any command reads a registry (stores nothing: the loaded
    plugins are core.plugins.loaded())."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        from ..core.plugins import load_plugins

        load_plugins([values])


# What Ctrl-C leaves, per command (set_defaults(interrupted=...)); every file is written atomically, so nothing is
# half-written in any case.
INTERRUPTED = "interrupted: every file is written atomically, nothing half-written was kept; rerun the same command"


def main(argv: list[str] | None = None) -> int:
    args = None
    # a path in another encoding than the terminal's (a folder named in Latin-1 on a UTF-8 system) is printed with
    # escapes, as Python prints it on stderr, instead of failing after the work is done
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        from ..core.plugins import load_plugins

        load_plugins()  # the installed entry points and $UEBENCH_PLUGINS, before the parser lists any registry
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine said no (full disk, read-only folder, a file where a folder goes): one line
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; nothing half-written was kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", INTERRUPTED), file=sys.stderr)
        return 130


def parse_nested_sets(items: list[str] | None, option: str) -> dict[str, dict]:
    """NAME.KEY=VALUE pairs (an attack's or a defense's parameter) -> {name: {key: value}}."""
    out: dict[str, dict] = {}
    for key, value in parse_sets(items, option).items():
        name, dot, k = key.partition(".")
        if not dot:
            raise UserError(f"{option} expects NAME.KEY=VALUE, got '{key}={value}'")
        out.setdefault(name, {})[k] = value
    return out


def parse_list(text: str, kind: type, option: str) -> list:
    """'a,b,c' -> numbers of `kind` (int or float; an int is taken as a float), or one UserError line."""
    import json

    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            value = int(item) if kind is int else json.loads(item)
        except ValueError:
            value = item
        if kind is float and isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**1023:
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is float and not math.isfinite(value)):
            raise UserError(
                f"{option} expects comma-separated {'numbers' if kind is float else 'whole numbers'}, got '{item}'"
            )
        out.append(value)
    return out


REMOVED_IN = "0.3.0"  # the version that drops the deprecated spellings below


class _Renamed(argparse.Action):
    """Stores (or appends) the value; when the old spelling was used, says on stderr that it goes."""

    def __init__(self, option_strings, dest, *, new: str, old: str, append: bool = False, **kw):
        super().__init__(option_strings, dest, **kw)
        self.new, self.old, self.append = new, old, append

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.old:
            print(
                f"warning: {self.old} is deprecated, use {self.new} (removed in uebench {REMOVED_IN})", file=sys.stderr
            )
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def add_renamed(p: argparse.ArgumentParser, option: str, old: str, *, help: str, **kw) -> None:
    """An option that has a new name: the old one is still accepted until REMOVED_IN, with a warning on stderr each
    time it is used, and the help says so."""
    dest = option.lstrip("-").replace("-", "_")
    append = kw.pop("action", "store") == "append"
    p.add_argument(
        option,
        old,
        dest=dest,
        action=_Renamed,
        new=option,
        old=old,
        append=append,
        help=f"{help} ({old}: deprecated, removed in uebench {REMOVED_IN})",
        **kw,
    )


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every data-using command shares."""
    p.add_argument("--dataset", default="scenes", help="dataset name (default: scenes, generated, no files needed)")
    p.add_argument("--data-dir", default=None, help="data folder (else $UEBENCH_DATA, else ~/.cache/uebench/data)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_sets(items: list[str] | None, option: str = "--set") -> dict:
    """key=value pairs; values parsed as JSON where they parse (numbers, true/false, lists), else strings (which the
    option's declared type then refuses where it wants a number: a 5,000-digit integer is one line, not a trace)."""
    from ..core.io import loads_json

    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"{option} expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key] = loads_json(value, f"{option} {key}")
        except UserError:
            out[key] = value
    return out
