"""Compatibility with a date: every old spelling still works until the version that removes it, and says so each time
it is used; the Python aliases of 0.1.0 are gone."""

from __future__ import annotations

import argparse

import pytest

from uebench.cli import REMOVED_IN, _Renamed, build_parser


def renamed_options(parser: argparse.ArgumentParser):
    """(command, old spelling, new spelling, appends) of every renamed option of every command."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, _Renamed):
                yield command, action.old, action.new, action.append


CASES = sorted(set(renamed_options(build_parser())))


def test_the_renamed_options_are_the_known_ones():
    assert len(CASES) == 12  # the old spellings of 0.1.0: a new rename must come with its warning here too
    assert {old for _, old, _, _ in CASES} == {
        "--set",
        "--attack-set",
        "--defense-set",
        "--train-subset",
        "--n-train",
        "--preset",
    }


def test_an_attack_preset_is_attack_preset_in_every_command():
    """One name for an attack's preset: --attack-preset (craft, landscape, crosstask); craft's and landscape's
    --preset is its deprecated alias, while bench's and crosstask's --preset is the experiment's."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("craft", "landscape"):
        action = next(a for a in sub.choices[command]._actions if "--attack-preset" in a.option_strings)
        assert isinstance(action, _Renamed) and action.old == "--preset", command
    assert any("--attack-preset" in a.option_strings for a in sub.choices["crosstask"]._actions)
    for command in ("bench", "crosstask"):
        assert not any(isinstance(a, _Renamed) and a.old == "--preset" for a in sub.choices[command]._actions)


def test_landscape_preset_makes_the_same_experiment_as_attack_preset(monkeypatch, tmp_path, capsys):
    import uebench.experiments.landscape as landscape
    from uebench.cli import main

    made = []
    monkeypatch.setattr(landscape, "run_landscape", lambda cfg, *a, **k: made.append(cfg) or {})
    for option in ("--preset", "--attack-preset"):
        main(["landscape", option, "paper", "--out", str(tmp_path / "x"), "--quiet"])
    warned = capsys.readouterr().err
    assert warned.count(f"--preset is deprecated, use --attack-preset (removed in uebench {REMOVED_IN})") == 1
    assert made[0] == made[1] and made[0].preset == "paper"


def test_the_training_subset_is_subset_in_every_command():
    """One name for one setting: --subset in every command that takes a seeded subset of the training images; the
    other spellings (landscape's --n-train, the last, and --train-subset) are only deprecated aliases of it."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("bench", "craft", "crosstask", "landscape", "train"):
        actions = sub.choices[command]._actions
        assert any(a.option_strings[:1] == ["--subset"] for a in actions), command
        others = [a for a in actions if {"--n-train", "--train-subset"} & set(a.option_strings)]
        assert all(isinstance(a, _Renamed) and a.new == "--subset" for a in others), command


def test_landscape_n_train_makes_the_same_experiment_as_subset(monkeypatch, tmp_path, capsys):
    import uebench.experiments.landscape as landscape
    from uebench.cli import main

    made = []
    monkeypatch.setattr(landscape, "run_landscape", lambda cfg, *a, **k: made.append(cfg) or {})
    for option in ("--n-train", "--subset"):
        main(["landscape", option, "64", "--out", str(tmp_path / "x"), "--quiet"])
    assert (
        capsys.readouterr().err.count(f"--n-train is deprecated, use --subset (removed in uebench {REMOVED_IN})") == 1
    )
    assert made[0] == made[1] and made[0].subset == 64


@pytest.mark.parametrize("command, old, new, appends", CASES, ids=[f"{c} {o}" for c, o, _, _ in CASES])
def test_an_old_spelling_works_and_warns_until_its_version(command, old, new, appends, capsys):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    value = "a=1" if appends else "64"
    required = [x for a in sub._actions if a.required and a.option_strings for x in (a.option_strings[0], "x")]
    by_old = sub.parse_args([*required, *([old, value, old, value] if appends else [old, value])])
    warned = capsys.readouterr().err
    by_new = sub.parse_args([*required, *([new, value, new, value] if appends else [new, value])])
    dest = new.lstrip("-").replace("-", "_")
    assert getattr(by_old, dest) == getattr(by_new, dest)  # the same meaning
    assert warned.count(f"warning: {old} is deprecated, use {new} (removed in uebench {REMOVED_IN})") == (
        2 if appends else 1
    )
    assert capsys.readouterr().err == ""  # the new spelling says nothing


@pytest.mark.parametrize("option, old", [("plasma", "full"), ("trivial_augment_impl", "uebench")])
def test_ueraser_constructions_before_the_kornia_check_warn(option, old):
    from uebench.defenses import create_defense

    with pytest.warns(FutureWarning, match=f"{option}={old} is deprecated.*{REMOVED_IN}"):
        create_defense("ueraser", **{option: old})


def test_the_aliases_of_0_1_0_are_gone():
    import uebench.attacks
    import uebench.data

    assert not hasattr(uebench.data, "stratified_subset") and hasattr(uebench.data, "seeded_subset")
    assert not hasattr(uebench.attacks, "PRESETS") and hasattr(uebench.attacks, "ATTACK_PRESETS")


def _keyword_cases():
    from dataclasses import replace

    from uebench.experiments.crosstask.experiment import CROSSTASK_SAL, CrossTaskConfig
    from uebench.experiments.landscape import LandscapeConfig
    from uebench.training.trainer import TrainConfig

    sal = replace(CROSSTASK_SAL, mode="faithful", subset=128, rounds=3)
    return [
        (TrainConfig, {"train_subset": 64}, {"subset": 64}, "train_subset"),
        (CrossTaskConfig, {"train_subset": 64}, {"subset": 64}, "train_subset"),
        (CrossTaskConfig, {"encoder": "resnet34"}, {"model": "resnet34"}, "encoder"),
        (CrossTaskConfig, {"sal": False}, {"probe_sal": False}, "sal=True/False"),
        (CrossTaskConfig, {"sal_mode": "faithful", "sal_subset": 128, "sal_rounds": 3}, {"sal": sal}, "sal_mode"),
        (LandscapeConfig, {"n_train": 64}, {"subset": 64}, "n_train"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_an_old_keyword_name_works_and_warns_until_its_version(case):
    import warnings

    make, old, new, name = _keyword_cases()[case]
    with pytest.warns(FutureWarning) as caught:
        by_old = make(**old)
    said = [str(w.message) for w in caught]
    assert len(said) == len(old) and all(f"removed in uebench {REMOVED_IN}" in m for m in said)  # one per old name
    assert said[0].startswith(f"{make.__name__}: {name} is deprecated, use ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name says nothing
        assert make(**new) == by_old


def test_an_old_attribute_name_reads_with_a_warning():
    from uebench.training.trainer import TrainConfig

    with pytest.warns(FutureWarning, match=f"train_subset is deprecated, use subset.*{REMOVED_IN}"):
        assert TrainConfig(subset=64).train_subset == 64
    with pytest.raises(TypeError, match="both"):
        TrainConfig(subset=64, train_subset=64)


def test_records_keep_the_names_they_were_written_with():
    """A run's config.json, a crosstask or landscape folder's identity: the names of 0.1.0, read back into the new
    fields (folders written before the rename keep their identity and resume)."""
    from uebench.experiments.crosstask.experiment import CrossTaskConfig
    from uebench.experiments.landscape import LandscapeConfig
    from uebench.training.trainer import TrainConfig

    tc = TrainConfig(subset=64)
    assert tc.fields()["train_subset"] == 64 and "subset" not in tc.fields()
    assert TrainConfig.from_record(tc.fields()) == tc
    ct = CrossTaskConfig(subset=64, model="resnet34", probe_sal=False)
    d = ct.to_dict()
    assert (d["train_subset"], d["encoder"], d["sal"], d["sal_mode"], d["sal_subset"], d["sal_rounds"]) == (
        64,
        "resnet34",
        False,
        "fast",
        256,
        None,
    )
    assert not {"subset", "model", "probe_sal", "sal_eps", "subset_seed", "multitask_combine"} & set(d)
    assert CrossTaskConfig.from_record(d) == ct
    assert LandscapeConfig(subset=64).to_dict()["n_train"] == 64 and "subset" not in LandscapeConfig().to_dict()
