"""benchmarks/fast_vs_faithful.py's bookkeeping: the bar, a cache that belongs to one bench, shared work."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uebench.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("fast_vs_faithful", ROOT / "benchmarks" / "fast_vs_faithful.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bar_by_hand(study):
    ok = {"ud_fast": 1.05, "ud_faithful": 1.0, "ud_faithful_2": 1.02, "rho_fast_faithful_mean": 0.8}
    ok["rho_faithful_faithful_mean"] = 0.85
    assert study._bar(ok) is True  # |dUD| 0.05 <= 0.1; rho 0.80 >= 0.85 - 0.1
    assert study._bar({**ok, "ud_fast": 1.2}) is False  # 0.2 > max(0.1, 0.02)
    assert study._bar({**ok, "ud_fast": 1.2, "ud_faithful_2": 1.3}) is True  # faithful's own noise is 0.3
    assert study._bar({**ok, "rho_fast_faithful_mean": 0.7}) is False
    assert study._bar({**ok, "ud_faithful_2": None}) is None  # not measured yet: no verdict either way
    # more passes: the widest distance from pass 1 is the noise term
    assert study._bar({**ok, "ud_fast": 1.25}, [1.02, 0.7]) is True  # 0.25 <= 0.3 (pass 3)
    assert study._bar({**ok, "ud_fast": 1.35}, [1.02, 0.7]) is False
    assert study._bar({**ok, "ud_fast": 1.05}, [1.02, None]) is None


def test_a_cache_belongs_to_one_bench(study, tmp_path):
    study.check_cache(tmp_path, {"subset": 1000})
    study.check_cache(tmp_path, {"subset": 1000})  # the same bench: resumes
    with pytest.raises(UserError, match="caches another bench's snapshots"):
        study.check_cache(tmp_path, {"subset": 2000})


def test_the_cache_outlives_a_change_of_the_fast_estimator_but_not_of_the_probe(study, tmp_path):
    old = {"subset": 1000, "sal": {"eps": 0.05, "crossfit": True, "anchor": True, "augment": "recipe"}}
    study.check_cache(tmp_path, old)  # a bench probed with 0.1.0's estimator
    study.check_cache(tmp_path, {**old, "sal": {**old["sal"], "crossfit": False, "step_rule": "sgd"}})  # today's
    with pytest.raises(UserError, match="caches another bench's snapshots"):
        study.check_cache(tmp_path, {**old, "sal": {**old["sal"], "eps": 0.1}})  # another ball: other passes


def test_a_pass_is_claimed_once_and_a_dead_workers_claim_is_taken_over(study, tmp_path):
    path = tmp_path / "run" / "e002-pass1-abc.json"
    assert study.claim(path) and not study.claim(Path(str(path)))  # this process holds it (a live pid)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.with_suffix(".claim").write_text(dead.stdout.strip())  # a worker that is gone
    assert study.claim(path) and path.with_suffix(".claim").read_text() == str(os.getpid())
