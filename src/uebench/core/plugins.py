"""Plugins: your own attacks, defenses, models, datasets or recipes, registered from your own module, without a fork.

A plugin is a module that registers names on import (`@register_attack`, `@register_defense`, ...). It loads from:

1. an installed package's entry point in the group `uebench.plugins` (pyproject.toml:
   `[project.entry-points."uebench.plugins"] myattack = "myattack"`); a value `module:function` imports the module
   and then calls the function with no arguments;
2. the environment variable `UEBENCH_PLUGINS`, comma-separated;
3. the modules given: the command line's `--plugin MODULE` (repeatable), or `uebench.load_plugins(["mypkg.attacks"])`.

A module is a dotted name importable from sys.path, or a path to a `.py` file (imported as
`uebench_plugin_<stem>_<hash of its path>`). Each loads once per process, in that order (entry points by name); a
second request is a no-op. A module that fails to import, or that registers a name which already exists (a built-in's,
an earlier plugin's), is one UserError line naming the module and where it came from.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import UserError

GROUP = "uebench.plugins"
ENV = "UEBENCH_PLUGINS"

_loaded: list[str] = []  # what loaded, in order (the key `_load` gives each)


def load_plugins(modules: Sequence[str] = (), *, entry_points: bool = True) -> list[str]:
    """Import the plugins: the `uebench.plugins` entry points (unless `entry_points` is False), the modules named in
    $UEBENCH_PLUGINS, then `modules`. Returns every plugin these sources name, in load order (entry points as their
    `module[:function]` value, the others as given), whether this call or an earlier one loaded it."""
    if isinstance(modules, str):  # load_plugins("mypkg") would otherwise read as six one-letter modules
        modules = [modules]
    out: list[str] = []
    if entry_points:
        for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
            out.append(_load(ep.value, f"entry point '{ep.name}'"))
    for name in os.environ.get(ENV, "").split(","):
        if name.strip():
            out.append(_load(name.strip(), ENV))
    for name in modules:
        out.append(_load(str(name), "--plugin"))
    return list(dict.fromkeys(out))


def loaded() -> list[str]:
    """The plugins this process has loaded, in order (a file as its resolved path)."""
    return list(_loaded)


def _load(spec: str, origin: str) -> str:
    """Import one plugin (once): a dotted module, a `.py` file, or `module:function` (the entry points' form; the
    function is then called with no arguments)."""
    key = str(Path(spec).resolve()) if _is_file(spec) else spec
    if key in _loaded:
        return spec
    try:
        if _is_file(spec):
            _import_file(Path(spec))
        else:
            module, _, function = spec.partition(":")
            target = importlib.import_module(module.strip())
            if function:
                for attr in function.strip().split("."):
                    target = getattr(target, attr)
                target()
    except UserError as e:
        raise UserError(f"plugin '{spec}' ({origin}): {e}") from None
    except Exception as e:  # noqa: BLE001 - any error in someone else's module is one line naming it
        if isinstance(e, ValueError) and str(e).endswith("registered twice"):  # Registry.register refused a name
            raise UserError(
                f"plugin '{spec}' ({origin}): {_first_line(e)}: the name is taken (by uebench or an earlier "
                "plugin); register yours under another"
            ) from None
        raise UserError(f"plugin '{spec}' ({origin}) failed to load: {type(e).__name__}: {_first_line(e)}") from None
    _loaded.append(key)
    return spec


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def _import_file(path: Path) -> None:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"uebench_plugin_{''.join(c if c.isalnum() else '_' for c in path.stem)}_{digest}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as `import` does: the module may refer to itself (dataclasses, pickling)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"
