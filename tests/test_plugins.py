"""Plugins (core/plugins.py, `uebench --plugin`, $UEBENCH_PLUGINS, `uebench.plugins` entry points): the example of
docs/guides/extending.md, built into a package here, is listed, crafts and benches from the command line; a broken or
clashing plugin is one line and exit status 2; a plugin loads once.

Registries are process-global: every case that registers a plugin runs in a subprocess, so no other test sees it."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from uebench.cli import main

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs/guides/extending.md"


def guide_blocks() -> dict[str, str]:
    """The plugin section's code blocks, by language: the pyproject.toml and the module, as the docs show them."""
    section = GUIDE.read_text().split("\n## As a plugin (no fork)\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", section, re.S | re.M)
    assert [lang for lang, _ in blocks] == ["toml", "python"]
    return dict(blocks)


@pytest.fixture
def package(tmp_path) -> Path:
    """The guide's package `uebench-myattack` written out: pyproject.toml and myattack.py."""
    root = tmp_path / "uebench-myattack"
    root.mkdir()
    blocks = guide_blocks()
    (root / "pyproject.toml").write_text(blocks["toml"])
    (root / "myattack.py").write_text(blocks["python"])
    return root


def cli(*args: str, path: Path | None = None, env: dict[str, str] | None = None, code: str | None = None, timeout=120):
    """`python -m uebench.cli ARGS` (or `python -c CODE`) in a fresh process, with `path` on its PYTHONPATH."""
    environ = {k: v for k, v in os.environ.items() if k not in ("UEBENCH_PLUGINS", "PYTHONPATH")}
    environ |= {"OMP_NUM_THREADS": "1", **(env or {})}
    if path is not None:
        environ["PYTHONPATH"] = str(path)
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "uebench.cli", *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_the_guides_example_is_a_complete_plugin_package(package):
    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "uebench-myattack"
    assert project["project"]["entry-points"]["uebench.plugins"] == {"myattack": "myattack"}
    assert 20 <= len((package / "myattack.py").read_text().splitlines()) <= 40
    compile((package / "myattack.py").read_text(), "myattack.py", "exec")


def test_a_plugin_file_or_module_lists_before_or_after_the_command(package):
    r = cli("--plugin", str(package / "myattack.py"), "attacks", "--json")
    assert r.returncode == 0, r.stderr
    mine = next(a for a in json.loads(r.stdout) if a["name"] == "mine")
    assert mine["norm"] == "linf" and abs(mine["budget"] - 8 / 255) < 1e-9
    r = cli("defenses", "--plugin", "myattack", path=package)  # after the command, as a dotted name
    assert r.returncode == 0, r.stderr
    assert "posterize" in r.stdout and "keep the top 4 bits" in r.stdout


def test_craft_with_a_plugin_attack_writes_a_poison_within_its_budget(package, tmp_path):
    out = tmp_path / "mine.safetensors"
    args = ["--plugin", "myattack", "craft", "--attack", "mine", "--dataset", "scenes", "--quiet"]
    args += ["--data-option", "n_train=64", "--data-option", "n_test=32", "--out", str(out)]
    r = cli(*args, path=package)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.splitlines()[0])
    assert report["attack"] == "mine" and report["images"] == 64
    assert 0 < report["measured"] <= report["budget"] + 1e-6

    from uebench import Poison
    from uebench.data import load

    poison = Poison.load(out)
    poison.check(load("scenes", None, "train", n_train=64, n_test=32))  # the budget, on the baked bytes
    assert poison.meta.attack == "mine" and poison.meta.norm == "linf"


def test_uebench_plugins_and_an_installed_entry_point_load_on_every_command(package, tmp_path):
    r = cli("attacks", path=package, env={"UEBENCH_PLUGINS": " , myattack,"})
    assert r.returncode == 0, r.stderr
    assert re.search(r"^mine\s+linf", r.stdout, re.M)

    # an installed distribution, as pip leaves it: the module and a .dist-info folder with its entry points
    site = tmp_path / "site"
    site.mkdir()
    (site / "myattack.py").write_text((package / "myattack.py").read_text())
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    info = site / "uebench_myattack-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]["uebench.plugins"]
    (info / "entry_points.txt").write_text("[uebench.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    r = cli("defenses", path=site)
    assert r.returncode == 0, r.stderr
    assert "posterize" in r.stdout
    # and with the same module named again on the command line and in $UEBENCH_PLUGINS: loaded once, no clash
    r = cli("--plugin", "myattack", "attacks", path=site, env={"UEBENCH_PLUGINS": "myattack"})
    assert r.returncode == 0, r.stderr
    assert re.search(r"^mine\s+linf", r.stdout, re.M)


def test_loading_twice_is_a_no_op_and_the_python_api_sees_the_plugin(package):
    code = f"""
import uebench
from uebench.core.plugins import load_plugins, loaded
path = {str(package / "myattack.py")!r}
assert uebench.load_plugins([path]) == [path]
assert load_plugins([path, path]) == [path] and uebench.load_plugins(path) == [path]
assert loaded() == [path] and "mine" in uebench.list_attacks() and "posterize" in uebench.list_defenses()
ds = uebench.load("scenes", None, "train", n_train=32, n_test=16)
poison = uebench.craft("mine", ds, progress=False)
poison.check(ds)
print("ok", poison.meta.attack)
"""
    r = cli(code=code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok mine"
    r = cli("--plugin", str(package / "myattack.py"), "attacks", "--plugin", str(package / "myattack.py"))
    assert r.returncode == 0, r.stderr


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_broken_or_clashing_plugin_is_one_line_and_exit_status_2(tmp_path, capsys, monkeypatch):
    # in this process: none of these registers anything (the clash is refused before it is added)
    monkeypatch.delenv("UEBENCH_PLUGINS", raising=False)
    assert main(["--plugin", "no_such_plugin_module", "attacks"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no_such_plugin_module" in line and "(--plugin)" in line and "ModuleNotFoundError" in line

    broken = tmp_path / "broken.py"
    broken.write_text('raise RuntimeError("the plugin is broken\\nsecond line")\n')
    assert main(["craft", "--plugin", str(broken), "--attack", "ops", "--out", str(tmp_path / "x.safetensors")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(broken) in line and "RuntimeError: the plugin is broken" in line and "second line" not in line
    assert not (tmp_path / "x.safetensors").exists()

    clash = tmp_path / "clash.py"
    clash.write_text(
        "from uebench.attacks.base import register_attack\n"
        "from uebench.attacks.ops import OPS\n\n\n"
        "@register_attack\n"
        "class Mine(OPS):\n"
        '    name = "ops"\n'
    )
    monkeypatch.setenv("UEBENCH_PLUGINS", str(clash))
    assert main(["attacks"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(clash) in line and "(UEBENCH_PLUGINS)" in line and "attack 'ops' registered twice" in line

    from uebench.attacks import ATTACKS
    from uebench.attacks.ops import OPS

    assert ATTACKS.get("ops") is OPS  # the registry kept its own


def test_a_bench_with_a_plugin_attack_and_defense(package, tmp_path):
    args = ["--plugin", "myattack", "bench", "--preset", "quick", "--attacks", "mine", "--defenses", "none,posterize"]
    args += ["--data-option", "n_train=120", "--data-option", "n_test=60", "--width", "0.125", "--epochs", "1"]
    args += ["--sal-every", "1", "--sal-subset", "16", "--sal-rounds", "1", "--out", str(tmp_path / "b"), "--quiet"]
    r = cli(*args, path=package)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "b" / "results.csv") as f:
        rows = {(row["attack"], row["defense"]) for row in csv.DictReader(f)}
    assert rows >= {("clean", "none"), ("mine", "none"), ("mine", "posterize")}


@pytest.mark.slow  # starts a local Ray cluster in a fresh process (about half a minute)
def test_ray_workers_load_the_drivers_plugins(package, tmp_path):
    pytest.importorskip("ray")
    args = ["--plugin", "myattack", "bench", "--preset", "quick", "--attacks", "mine", "--executor", "ray"]
    args += ["--cpus-per-run", "1", "--data-option", "n_train=120", "--data-option", "n_test=60", "--epochs", "1"]
    args += ["--sal-every", "1", "--sal-subset", "16", "--sal-rounds", "1", "--out", str(tmp_path / "b"), "--quiet"]
    r = cli(
        *args, path=package, timeout=600
    )  # the workers are other processes: 'mine' is known there only if they load it
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "b" / "results.csv") as f:
        assert {row["attack"] for row in csv.DictReader(f)} == {"clean", "mine"}
