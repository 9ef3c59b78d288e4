"""The bench on Ray (uebench.experiments.bench.ray_executor): a local cluster gives the serial executor's results, and a
worker killed in the middle of a run is retried by Ray and resumes the run from its last committed epoch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchkit import SMALL as BENCH
from benchkit import histories
from uebench.cli import main
from uebench.experiments.bench.run import run_bench

ray = pytest.importorskip("ray")

SMALL = replace(BENCH, epochs=3)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_equals_serial_and_a_killed_worker_resumes_its_run(cluster, tmp_path):
    from uebench.experiments.bench.ray_executor import run_bench_on_ray

    # one thread here (conftest's one_thread) as in each Ray task (cpus_per_run=1): the same bytes on CPU
    assert run_bench(SMALL, tmp_path / "serial", progress=False, log=None).complete
    marker = tmp_path / "killed-once"
    result = run_bench_on_ray(
        SMALL,
        tmp_path / "ray",
        cpus_per_run=1,
        log=None,
        env={"UEBENCH_KILL_AFTER_EPOCH": "1", "UEBENCH_KILL_MARKER": str(marker)},
    )
    assert marker.exists()  # one worker was killed (SIGKILL) right after committing a run's first epoch
    assert result.complete and (tmp_path / "ray" / "report.html").exists()
    assert sorted(Path(r).name for r in result.trained) == sorted(histories(tmp_path / "serial"))
    # the retried task continued the run after epoch 1 instead of starting it over
    assert [r["epochs_before"] for r in result.runs].count(1) == 1
    assert all(r["epochs_after"] == 3 for r in result.runs)
    assert histories(tmp_path / "ray") == histories(tmp_path / "serial")
    # a second call finds everything done and trains nothing
    again = run_bench_on_ray(SMALL, tmp_path / "ray", log=None)
    assert again.complete and again.trained == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "ray", "--address", "127.0.0.1:9"], "cannot reach a Ray cluster at 127.0.0.1:9"),
        (["--executor", "ray", "--address", "nowhere"], "--address is auto or HOST:PORT"),
        (["--executor", "ray", "--shard", "0/2"], "drop one"),
        (["--gpus-per-run", "1"], "only apply with --executor ray"),
        (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be > 0"),
    ],
)
def test_ray_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    code = main(["bench", *args, "--data-option", "n_train=64", "--attacks", "ops", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()
