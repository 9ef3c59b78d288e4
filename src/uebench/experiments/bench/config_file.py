"""A bench's settings as a TOML file: what `uebench bench --config FILE` reads, and what every bench writes into its
folder (bench.toml) so that `uebench bench --config runs/x/bench.toml --out runs/y` replays it, run keys and all.

    command = "bench"
    preset = "quick"             # the base the other keys override (default quick, as on the command line)
    dataset = "cifar10"
    subset = 5000
    attacks = ["em", "ops"]
    seeds = [0]
    unset = ["epochs"]           # settings left unset (None): TOML has no null

    [sal]                        # one key per SAL setting
    mode = "fast"

    [attack_params.em]
    max_rounds = 4

The keys are BenchConfig's fields under their Python names; a nested setting is a table ([sal], [dataset_options],
[attack_params.em], [defense_params.jpeg]). Two ways to read a file:
- a file that gives every setting (as bench.toml does) is the config as it stands, with no preset under it; its
  `preset` only names the bench (in the report), so a config made in Python under any name replays;
- a file that leaves settings out starts from its `preset` and overrides it as the flags do: a `dataset` other than
  the preset's drops the preset's dataset options (as --dataset does); [dataset_options], [attack_params.X] and
  [defense_params.X] add their keys to the preset's (as --data-option and --attack-option do); each [sal] key sets
  one SAL setting, and a `mode` other than the preset's starts from that mode's defaults (as --sal-mode does).
A file is untrusted input: bounded in size, every key known and of its type, then BenchConfig's own validation when
the bench runs; every refusal is one UserError line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

from ... import __version__
from ...core import tomlio
from ...core.errors import UserError
from ...metrics.sal_config import SALConfig
from .config import BenchConfig, preset

COMMAND = "bench"
# keys of the file that are not BenchConfig fields
META = ("command", "unset")
# settings whose tables add to the preset's (per name, for the two of tables of tables) in a partial file
MERGED = ("dataset_options", "attack_params", "defense_params")
# settings added after bench.toml existed: a file that gives every other setting was written before them, and holds
# their defaults (a bench from scratch)
LATER = ("init_from", "init_head", "freeze")
_HEADER = re.compile(r"^#\s*uebench (\S+) config\b")


def header() -> str:
    return (
        f"uebench bench config, written by uebench {__version__}: the settings of this bench as its last call ran it\n"
        "replay it: uebench bench --config bench.toml --out DIR (flags given beside --config override the file)"
    )


# ---- BenchConfig -> TOML ------------------------------------------------------------------------------------------
def to_toml_dict(config: BenchConfig) -> dict[str, Any]:
    """Every setting, so that the file reads back as this config alone (no preset under it): tuples as lists, a
    setting that is None (anywhere) named in `unset`."""
    out: dict[str, Any] = {"command": COMMAND, "preset": config.preset}
    unset: list[str] = []
    for f in dataclasses.fields(config):
        if f.name == "preset":
            continue
        v = getattr(config, f.name)
        if isinstance(v, SALConfig):
            v = dataclasses.asdict(v)  # every field: the record() form leaves out settings at their old values
        out[f.name] = _out(v, (f.name,), unset)
    out = {k: v for k, v in out.items() if v is not None}
    out["unset"] = unset
    return out


def _out(v: Any, path: tuple[str, ...], unset: list[str]) -> Any:
    if v is None:
        if any("." in p for p in path):
            raise ValueError(f"{'.'.join(path)} is None, and a key holding '.' cannot be named in `unset`")
        unset.append(".".join(path))
        return None
    if isinstance(v, dict):
        kept = {k: _out(x, (*path, str(k)), unset) for k, x in v.items()}
        return {k: x for k, x in kept.items() if x is not None}
    if isinstance(v, (tuple, list)):
        if any(x is None for x in v):
            raise ValueError(f"{'.'.join(path)} holds None in a list, which TOML cannot hold")
        return [_out(x, path, unset) for x in v]
    return v


def config_text(config: BenchConfig) -> str:
    """bench.toml's text; a config TOML cannot hold exactly (a value of another type, a lone surrogate in a path, an
    integer beyond 64 bits) is refused in one line, before the bench's folder is touched."""
    try:
        text = tomlio.dumps(to_toml_dict(config), header=header())
    except (TypeError, ValueError) as e:
        raise UserError(f"the bench's settings cannot be written as a TOML config (bench.toml): {e}") from None
    if from_toml_dict(tomlio.loads(text, "bench.toml"), "bench.toml") != _as_read(config):
        raise UserError("the bench's settings do not read back from their TOML config (bench.toml) as they are")
    return text


def _as_read(config: BenchConfig) -> BenchConfig:
    """The config as a file holds it: lists inside the free-form tables read back as lists, never tuples."""

    def lists(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: lists(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [lists(x) for x in v]
        return v

    return dataclasses.replace(config, **{name: lists(getattr(config, name)) for name in MERGED})


# ---- TOML -> BenchConfig ------------------------------------------------------------------------------------------
def read_config(path: str | Path, preset_name: str | None = None) -> BenchConfig:
    """The config a file holds (`preset_name`, as --preset gives it, replaces the file's `preset`). Not checked
    beyond the keys and their types: the bench validates it as any other config."""
    data = tomlio.read(path)
    where = str(path)
    m = _HEADER.match(tomlio.first_line(path))
    if m and m.group(1) != COMMAND:
        raise UserError(f"{where} is a config of uebench {m.group(1)} (its first line says so), not of bench")
    return from_toml_dict(data, where, preset_name)


def from_toml_dict(data: dict[str, Any], where: str, preset_name: str | None = None) -> BenchConfig:
    data = dict(data)
    command = data.pop("command", COMMAND)
    if command != COMMAND:
        said = command[:40] if isinstance(command, str) else _shown(command)
        raise UserError(f"{where} is a config of uebench {said!r} (its command key), not of bench")
    name = data.pop("preset", None)
    if name is not None and not isinstance(name, str):
        raise UserError(f"{where}: preset must be a string, got {_shown(name)}")
    if preset_name is not None:  # --preset beside --config: a preset of uebench's, whatever the file gives
        preset(preset_name)
        name = preset_name
    unset = _convert(data.pop("unset", []), tuple[str, ...], where, "unset")
    hints = typing.get_type_hints(BenchConfig)
    fields = [f.name for f in dataclasses.fields(BenchConfig) if f.name != "preset"]
    for k in data:
        if k not in fields:
            raise _unknown(where, k, [*fields, "preset", *META])
    values = {k: _convert(v, hints[k], where, k) for k, v in data.items() if k != "sal"}
    sal = _sal_table(data.get("sal", {}), where)
    top = {u for u in unset if "." not in u}
    if set(fields) - set(LATER) <= set(data) | top:  # every setting given: the config as it stands
        config = BenchConfig(**values, sal=SALConfig(**sal), preset=name or BenchConfig.preset)
    else:
        config = _over_preset(preset(name or "quick"), values, sal)
    return _unset(config, unset, where, hints)


def _over_preset(base: BenchConfig, values: dict[str, Any], sal: dict[str, Any]) -> BenchConfig:
    """A partial file over its preset, the way the command line's flags go over theirs."""
    if "dataset" in values:
        base = base.with_dataset(values["dataset"])
    changes = dict(values)
    if "dataset_options" in values:
        changes["dataset_options"] = {**base.dataset_options, **values["dataset_options"]}
    for name in ("attack_params", "defense_params"):
        if name in values:
            merged = {k: dict(v) for k, v in getattr(base, name).items()}
            for key, kv in values[name].items():
                merged.setdefault(key, {}).update(kv)
            changes[name] = merged
    if sal:
        start = base.sal if sal.get("mode", base.sal.mode) == base.sal.mode else SALConfig(mode=sal["mode"])
        changes["sal"] = dataclasses.replace(start, **sal)
    return dataclasses.replace(base, **changes)


def _sal_table(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UserError(f"{where}: sal must be a table ([sal]), got {_shown(table)}")
    hints = typing.get_type_hints(SALConfig)
    for k in table:
        if k not in hints:
            raise _unknown(where, f"sal.{k}", [f"sal.{f}" for f in hints])
    return {k: _convert(v, hints[k], where, f"sal.{k}") for k, v in table.items()}


def _unset(config: BenchConfig, unset: tuple[str, ...], where: str, hints: dict[str, Any]) -> BenchConfig:
    """The settings `unset` names, set to None (only where None is a value the setting takes)."""
    changes: dict[str, Any] = {}
    for path in unset:
        head, *rest = path.split(".")
        if head == "sal" and len(rest) == 1 and rest[0] in typing.get_type_hints(SALConfig):
            if not _optional(typing.get_type_hints(SALConfig)[rest[0]]):
                raise UserError(f"{where}: unset names {path}, which is never unset (it takes a value)")
            sal = changes.get("sal", config.sal)
            changes["sal"] = dataclasses.replace(sal, **{rest[0]: None})
        elif head in MERGED and len(rest) == (1 if head == "dataset_options" else 2) and all(rest):
            now = changes.get(head, getattr(config, head))
            table = {k: dict(v) if isinstance(v, dict) else v for k, v in now.items()}
            inner = table if head == "dataset_options" else table.setdefault(rest[0], {})
            inner[rest[-1]] = None
            changes[head] = table
        elif head in hints and not rest and head != "preset":
            if not _optional(hints[head]):
                raise UserError(f"{where}: unset names {path}, which is never unset (it takes a value)")
            changes[head] = None
        else:
            raise UserError(
                f"{where}: unset names '{path}', not a setting that can be unset (a field such as epochs, "
                "sal.rounds, or a key of dataset_options, attack_params.NAME or defense_params.NAME)"
            )
    return dataclasses.replace(config, **changes)


# ---- types ----------------------------------------------------------------------------------------------------------
def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _convert(v: Any, hint: Any, where: str, key: str) -> Any:
    """`v` as the field of type `hint` takes it (a whole number where a float goes becomes a float, a list where a
    tuple goes a tuple), or one UserError line."""
    if hint is Any:
        return _free(v, where, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(v, inner, where, key)
    if hint is bool and isinstance(v, bool):
        return v
    if hint is int and isinstance(v, int) and not isinstance(v, bool):
        return v
    if hint is float and isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            pass
    if hint is str and isinstance(v, str):
        return v
    if origin is tuple and isinstance(v, list):
        return tuple(_convert(x, args[0], where, f"{key}[{i}]") for i, x in enumerate(v))
    if origin is dict and isinstance(v, dict):
        return {k: _convert(x, args[1], where, f"{key}.{k}") for k, x in v.items()}
    raise UserError(f"{where}: {key} must be {_describe(hint)}, got {_shown(v)}")


def _free(v: Any, where: str, key: str) -> Any:
    """A free-form parameter (a dataset option, an attack's or a defense's): what the command line's KEY=VALUE takes,
    a string, number, boolean, list or table (TOML's dates are none of these)."""
    if isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, list):
        return [_free(x, where, f"{key}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, dict):
        return {k: _free(x, where, f"{key}.{k}") for k, x in v.items()}
    raise UserError(f"{where}: {key} must be a string, number, boolean, list or table, got {_shown(v)}")


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _describe(next(a for a in args if a is not type(None)))
    if origin is tuple:
        return f"a list (each {_describe(args[0])})"
    return "a table"


def _shown(v: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a table"}
    text = repr(v)
    return f"{kind.get(type(v), type(v).__name__)} {text if len(text) <= 40 else text[:37] + '...'}"


def _unknown(where: str, key: str, valid: list[str]) -> UserError:
    """An unknown key: what it is close to, and which other command's config has it."""
    other = [cmd for cmd, keys in _other_commands().items() if key in keys]
    named = " and ".join([", ".join(other[:-1]), other[-1]] if len(other) > 1 else other)
    hint = f" (a key of uebench {named} configs: is this file one?)" if other else ""
    close = difflib.get_close_matches(key, valid, n=1)
    return UserError(f"{where}: unknown key '{key}'{hint}" + (f"; did you mean '{close[0]}'?" if close else ""))


def _other_commands() -> dict[str, set[str]]:
    from ...training.trainer import TrainConfig  # avoid importing the other experiments for a valid file
    from ..crosstask.experiment import CrossTaskConfig
    from ..landscape.pipeline import LandscapeConfig

    bench = {f.name for f in dataclasses.fields(BenchConfig)}
    return {
        cmd: {f.name for f in dataclasses.fields(cls)} - bench
        for cmd, cls in (("crosstask", CrossTaskConfig), ("landscape", LandscapeConfig), ("train", TrainConfig))
    }


__all__ = ["COMMAND", "config_text", "from_toml_dict", "read_config", "to_toml_dict"]
