"""`uebench bench --config FILE`: TOML written so it reads back exactly (uebench.core.tomlio), a BenchConfig as a file
and back (every preset, None values, names that are no preset's), a partial file over its preset as the flags go over
theirs, a bench replayed from its bench.toml into another folder (the same run keys and results), a flag over the
file, and every bad file refused in one line with exit status 2."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import pytest

from benchkit import results
from uebench.cli import build_parser, main
from uebench.cli.bench import config_from_args
from uebench.core import tomlio
from uebench.core.errors import UserError
from uebench.experiments.bench.config_file import config_text, from_toml_dict, read_config, to_toml_dict
from uebench.experiments.bench.run import CPU, PRESETS, QUICK, BenchConfig, SALSettings, bench_files, make_plan

# ---- the TOML writer and reader ------------------------------------------------------------------------------
FLOATS = [0.1, 1 / 3, -0.0, 0.0, 1e-300, 5e-324, 1.7976931348623157e308, 2.0**53 + 2, 123456789.125, 1e16, -2.5e-7]
STRINGS = ["", "plain", 'a "quoted" word', "back\\slash\\", "C:\\path\\", "tab\tnew\nline\r", "\x00\x1f\x7f\b\f",
           "é ü ß 日本語 🎉", "'single' and \"\"\" triple", "# not a comment", "a = 1", "[not.a.table]"]  # fmt: skip


def round_trip(data: dict) -> dict:
    return tomlio.loads(tomlio.dumps(data, header="a header\nof two lines"), "test.toml")


def test_every_value_type_reads_back_as_written():
    data = {
        "s": "text",
        "i": 42,
        "neg": -7,
        "big": 2**63 - 1,
        "small": -(2**63),
        "f": 0.5,
        "t": True,
        "no": False,
        "ints": [1, 2, 3],
        "mixed": [1, "a", 2.5, True],
        "nested": [[1, 2], ["x"], []],
        "empty": [],
        "table": {"a": 1, "deeper": {"b": [0.25], "deepest": {}}, "after": "plain keys first"},
        "empty_table": {},
        "tables_only": {"x": {"k": 1}, "y": {}},
    }
    back = round_trip(data)
    assert back == data
    assert all(type(back[k]) is type(data[k]) for k in data)  # an int stays an int, a float a float


def test_floats_read_back_exactly():
    back = round_trip({"xs": FLOATS, **{f"x{i}": x for i, x in enumerate(FLOATS)}})
    for i, x in enumerate(FLOATS):
        for y in (back["xs"][i], back[f"x{i}"]):
            assert y.hex() == x.hex() and math.copysign(1, y) == math.copysign(1, x)
    special = round_trip({"nan": math.nan, "inf": math.inf, "minf": -math.inf})
    assert math.isnan(special["nan"]) and special["inf"] == math.inf and special["minf"] == -math.inf


def test_strings_and_keys_with_quotes_backslashes_control_characters_and_unicode():
    data = {s: s for s in STRINGS} | {"list": STRINGS, "a.b": {"c d": STRINGS}}
    assert round_trip(data) == data
    assert tomlio.dumps({"k": "é"}).encode() == 'k = "é"\n'.encode()  # UTF-8 as it is, not escaped


@pytest.mark.parametrize(
    "data, error",
    [
        ({"x": None}, TypeError),
        ({"x": (1, 2)}, TypeError),
        ({"x": {1, 2}}, TypeError),
        ({"x": b"bytes"}, TypeError),
        ({"x": [{"a": 1}]}, TypeError),
        ({1: "x"}, TypeError),
        ({"x": 2**63}, ValueError),
        ({"x": -(2**63) - 1}, ValueError),
        ({"x": "lone \udc80 surrogate"}, ValueError),
    ],
)
def test_what_toml_cannot_hold_is_refused_not_written(data, error):
    with pytest.raises(error):
        tomlio.dumps(data)


def test_reading_is_bounded_and_every_failure_is_one_line(tmp_path):
    cases = {
        "missing": (tmp_path / "nope.toml", "not found"),
        "folder": (tmp_path, "is a folder"),
    }
    (tmp_path / "big.toml").write_text("# padding\n" * 200_000)
    cases["big"] = (tmp_path / "big.toml", "is over 1,048,576 bytes")
    (tmp_path / "latin1.toml").write_bytes('x = "é"'.encode("latin-1"))
    cases["latin1"] = (tmp_path / "latin1.toml", "not UTF-8")
    (tmp_path / "bad.toml").write_text("x = [1,\ny = ")
    cases["bad"] = (tmp_path / "bad.toml", "is not valid TOML")
    (tmp_path / "digits.toml").write_text("x = " + "9" * 5000)
    cases["digits"] = (tmp_path / "digits.toml", "is not valid TOML")
    (tmp_path / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000)
    cases["deep"] = (tmp_path / "deep.toml", "nested too deeply")
    for name, (path, message) in cases.items():
        with pytest.raises(UserError, match=message) as e:
            tomlio.read(path)
        assert len(str(e.value).splitlines()) == 1, name


# ---- BenchConfig <-> TOML -------------------------------------------------------------------------------------
def file_config(config: BenchConfig) -> BenchConfig:
    return from_toml_dict(tomlio.loads(config_text(config), "bench.toml"), "bench.toml")


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_reads_back_from_its_file(name):
    assert file_config(PRESETS[name]) == PRESETS[name]


def test_a_config_of_any_name_with_unset_values_reads_back():
    config = replace(
        CPU,
        preset="mine",  # no preset's name: a file that gives every setting needs none under it
        subset=None,  # the cpu preset's 5000 must not come back
        epochs=None,
        lr=0.05,
        data_dir="/data/ü dir",
        dataset_options={"n_train": 64, "opt": None},
        attack_params={"em": {"eps": 8 / 255, "model": "resnet18", "unset_me": None}},
        defense_params={"jpeg": {"quality": 20}},
        sal=SALSettings(mode="faithful", every=1, rounds=None, eps=0.02),
        seeds=(3, 1),
        poison_fractions=(0.5, 1.0),
        description='quotes " and \\ backslash',
    )
    data = to_toml_dict(config)
    assert set(data["unset"]) == {
        "subset",
        "epochs",
        "batch_size",
        "sal.rounds",
        "dataset_options.opt",
        "attack_params.em.unset_me",
        "init_from",
    }
    assert file_config(config) == config
    assert file_config(BenchConfig()) == BenchConfig()  # preset "custom", every default
    # a file written before the pretrained-start settings existed gives every other setting: it reads as it was
    old = {k: v for k, v in to_toml_dict(config).items() if k not in ("init_from", "init_head", "freeze")}
    old["unset"] = [u for u in old["unset"] if u != "init_from"]
    assert from_toml_dict(old, "old.toml") == config


def test_the_file_starts_with_what_wrote_it_and_how_to_replay_it():
    text = config_text(QUICK)
    assert text.startswith("# uebench bench config, written by uebench ")
    assert "uebench bench --config bench.toml --out DIR" in text.splitlines()[1]
    assert 'command = "bench"' in text


def test_a_partial_file_goes_over_its_preset_as_the_flags_do():
    def read(text: str) -> BenchConfig:
        return from_toml_dict(tomlio.loads(text, "f.toml"), "f.toml")

    assert read("") == QUICK  # the command line's default preset
    assert read('preset = "cpu"\nseeds = [1, 2]') == replace(CPU, seeds=(1, 2))
    width = read("width = 1")
    assert width.width == 1.0 and type(width.width) is float  # as --width 1 gives it: the same run keys
    options = read("[dataset_options]\nn_train = 500")
    assert options.dataset_options == {**QUICK.dataset_options, "n_train": 500}  # added, as --data-option does
    em = read("[attack_params.em]\nmax_rounds = 4")
    assert em.attack_params == {**QUICK.attack_params, "em": {"max_rounds": 4}}
    assert read('dataset = "cifar10"') == QUICK.with_dataset("cifar10")  # as --dataset: a subset of the same size
    assert read("[sal]\nevery = 5").sal == replace(QUICK.sal, every=5)
    assert read('[sal]\nmode = "faithful"').sal == SALSettings(mode="faithful")  # as --sal-mode: that mode's defaults
    assert read('unset = ["epochs"]').epochs is None


def test_a_bench_owns_its_file_and_never_takes_a_users(tmp_path, capsys):
    assert "bench.toml" in bench_files(tmp_path)  # --overwrite replaces a bench's
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "bench.toml").write_text("# the user's\n")  # without bench.json, a file of that name is the user's
    code, _, err = run_cli(["bench", *TINY_ARGS, "--out", mine, "--overwrite", "--quiet"], capsys)
    assert code == 2 and "holds bench.toml but no bench.json" in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in mine.iterdir()] == ["bench.toml"] and (mine / "bench.toml").read_text() == "# the user's\n"


# ---- the command line -----------------------------------------------------------------------------------------
TINY_ARGS = ["--data-option", "n_train=64", "--data-option", "n_test=32", "--attacks", "ops", "--width", "0.125",
             "--epochs", "1", "--sal-every", "1", "--sal-subset", "16", "--sal-rounds", "1",
             "--precision", "fp32"]  # fmt: skip


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def folder_keys(out):
    return sorted(p.name for p in (out / "runs").iterdir()), sorted(p.name for p in (out / "poisons").iterdir())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("config") / "x"
    assert main(["bench", *TINY_ARGS, "--out", str(out), "--quiet"]) == 0
    return out


def test_a_bench_replayed_from_its_file_has_the_same_run_keys_and_results(tiny, tmp_path, capsys):
    assert (tiny / "bench.toml").read_text().startswith("# uebench bench config")
    replay = tmp_path / "y"
    code, _, err = run_cli(["bench", "--config", tiny / "bench.toml", "--out", replay, "--quiet"], capsys)
    assert code == 0, err
    assert folder_keys(replay) == folder_keys(tiny) and len(folder_keys(tiny)[0]) == 2
    assert results(replay) == results(tiny)
    assert (replay / "bench.toml").read_text() == (tiny / "bench.toml").read_text()
    # the same file on the first folder is the same bench: it continues (trains nothing), it is not refused
    code, _, err = run_cli(["bench", "--config", tiny / "bench.toml", "--out", tiny, "--quiet"], capsys)
    assert code == 0, err


def test_a_flag_given_beside_the_file_overrides_exactly_that(tiny):
    def config(*flags):
        return config_from_args(build_parser().parse_args(["bench", "--config", str(tiny / "bench.toml"), *flags]))

    base = config()
    assert base == read_config(tiny / "bench.toml") and base.epochs == 1  # no flag given: the file, not quick's 10
    seeds = config("--seeds", "0,1")
    assert seeds == replace(base, seeds=(0, 1))
    assert [f.name for f in dataclasses.fields(base) if getattr(base, f.name) != getattr(seeds, f.name)] == ["seeds"]
    kept = {r.dir for r in make_plan(base).runs}
    assert kept < {r.dir for r in make_plan(seeds).runs}  # seed 0's runs keep their keys
    assert config("--sal-every", "1", "--epochs", "1") == base  # a flag equal to the file changes nothing
    assert config("--preset", "cpu").preset == "cpu" and config("--preset", "cpu").dataset == "scenes"


CROSSTASK = 'tasks = ["class", "segment"]\nattacks = ["ops"]\n'
BAD_FILES = {
    "unknown key": ("seed = [0]\n", "unknown key 'seed'", "did you mean 'seeds'"),
    "typo in [sal]": ("[sal]\nevry = 2\n", "unknown key 'sal.evry'", "did you mean 'sal.every'"),
    "wrong type": ('seeds = "0"\n', "seeds must be a list (each a whole number), got a string '0'", ""),
    "wrong type in a list": ('attacks = ["em", 3]\n', "attacks[1] must be a string", ""),
    "wrong type of [sal]": ('[sal]\nevery = "2"\n', "sal.every must be a whole number", ""),
    "a bool for a number": ("subset = true\n", "subset must be a whole number, got a boolean True", ""),
    "a date": ("[dataset_options]\nwhen = 2024-01-01\n", "dataset_options.when must be a string, number", ""),
    "crosstask keys": (CROSSTASK, "unknown key 'tasks' (a key of uebench crosstask configs", ""),
    "another command": ('command = "crosstask"\n', "is a config of uebench 'crosstask'", ""),
    "another command's header": ("# uebench crosstask config\nattacks = []\n", "is a config of uebench crosstask", ""),
    "not TOML": ("seeds = [0\n", "is not valid TOML: ", ""),
    "unset a number": ('unset = ["width"]\n', "unset names width, which is never unset", ""),
    "unset nothing known": ('unset = ["nope"]\n', "unset names 'nope', not a setting", ""),
    "the file's values are checked": ("seeds = [0, 0]\n", "seeds must be distinct", ""),
    "bad SAL value": ("[sal]\nevery = 0\n", "--sal-every must be >= 1", ""),
    "unknown preset": ('preset = "cpuu"\n', "unknown bench preset 'cpuu'", ""),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_one_line_and_exit_2(case, tmp_path, capsys):
    text, message, also = BAD_FILES[case]
    (tmp_path / "c.toml").write_text(text)
    code, _, err = run_cli(["bench", "--config", tmp_path / "c.toml", "--out", tmp_path / "b", "--quiet"], capsys)
    assert code == 2 and message in err and also in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "{tmp}/missing.toml"], "missing.toml not found"),
        (["--config", "{tmp}"], "is a folder, not a file"),
        (["--config", "{tmp}/big.toml"], "is over 1,048,576 bytes"),
        (["--config", "{tmp}/ok.toml", "--preset", "nope"], "unknown bench preset 'nope'"),
    ],
)
def test_a_missing_big_or_misnamed_file_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    (tmp_path / "big.toml").write_text("x = 1\n" * 200_000)
    (tmp_path / "ok.toml").write_text("seeds = [0]\n")
    full = ["bench", *(a.format(tmp=tmp_path) for a in args), "--out", tmp_path / "b", "--quiet"]
    code, _, err = run_cli(full, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_a_bench_of_scenes_without_a_difficulty_is_natural_and_one_made_before_keeps_its_identity():
    """scenes' default moved from `standard` to `natural` (0.2.0): a bench identity written before holds no
    difficulty and meant `standard`, so the difficulty is written out unless it is `standard`."""
    custom = BenchConfig(dataset="scenes", dataset_options={"n_train": 64, "n_test": 32})
    assert custom.identity()["dataset_options"] == {"n_train": 64, "n_test": 32, "difficulty": "natural"}
    standard = replace(custom, dataset_options={**custom.dataset_options, "difficulty": "standard"})
    assert standard.identity()["dataset_options"] == {"n_train": 64, "n_test": 32}  # as such a bench was written
    assert QUICK.identity()["dataset_options"] == QUICK.dataset_options  # every preset names its options
    assert [p.dataset_options for p in PRESETS.values() if p.dataset == "scenes"] == [QUICK.dataset_options]
    runs = {k: make_plan(c).runs[0].train["dataset_options"] for k, c in (("custom", custom), ("std", standard))}
    assert runs == {
        "custom": {"n_train": 64, "n_test": 32, "difficulty": "natural"},
        "std": {"n_train": 64, "n_test": 32},
    }
