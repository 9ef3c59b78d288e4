"""Do bench, crosstask and landscape still compute the same bytes? benchmarks/identity_check.py runs a tests-sized
version of each at one thread in fp32 and digests every result file (the volatile fields left out); here its digests
are compared with the reference this machine kind recorded (tests/identity/<kind>.txt). A change that moves a number
fails until its reference is written again, on purpose:

    python benchmarks/identity_check.py runs/identity > tests/identity/$(python -c \\
        "import sys; sys.path.insert(0, 'tests'); import test_identity; print(test_identity.kind())").txt

fp32 kernels differ between CPU kinds, so a machine without a reference of its own skips (and says how to add one).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ROOT / "tests" / "identity"


def kind() -> str:
    import platform

    import torch

    vendor, model = "", platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id") and not vendor:
                vendor = line.split(":", 1)[1].strip()
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = f"{vendor}-{model}-{torch.backends.cpu.get_cpu_capability()}-torch{torch.__version__}"
    return "".join(c if c.isalnum() or c in ".+-" else "_" for c in name)


def test_bench_crosstask_and_landscape_compute_the_reference_bytes(tmp_path):
    reference = REFERENCES / f"{kind()}.txt"
    if not reference.exists():
        pytest.skip(f"no identity reference for this machine kind ({reference.name}); the module docstring says how")
    got = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "identity_check.py"), str(tmp_path / "identity")],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    assert got.splitlines() == reference.read_text().splitlines()


def test_the_digest_sees_a_changed_number_and_ignores_a_time(tmp_path):
    spec = importlib.util.spec_from_file_location("identity_check", ROOT / "benchmarks" / "identity_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    a, b, c = (tmp_path / f"{x}.json" for x in "abc")
    a.write_text('{"test_acc": 50.0, "seconds": 1.0, "host": "x"}')
    b.write_text('{"test_acc": 50.0, "seconds": 2.5, "host": "y"}')
    c.write_text('{"test_acc": 50.000000001, "seconds": 1.0, "host": "x"}')
    assert check.digest_file(a) == check.digest_file(b) != check.digest_file(c)
