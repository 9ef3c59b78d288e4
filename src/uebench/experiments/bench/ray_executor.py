"""The bench on Ray: every crafting job and every run a Ray task writing into the bench folder (shared storage).

    result = run_bench_on_ray(PRESETS["cpu"], "runs/c10", address="auto", cpus_per_run=4, gpus_per_run=0.5)
    uebench bench --preset cpu --out runs/c10 --executor ray --address auto --cpus-per-run 4

The driver checks everything and takes the folder exactly as the serial bench does (`prepare_bench`), then submits
one task per poison still to craft and one per run still to train. A run's task takes its poison's task as an
argument, so Ray starts it only once the poison is written; the report waits for every run. A task that loses its
worker (a killed process, a lost node) is retried by Ray up to `max_retries` times, and the retry resumes the run from
its last committed epoch: the run folder, not the task, holds the progress. Each task is the serial bench's own step
(`ensure_poison`, `train_run`), so on CPU at the same thread count the results equal the serial executor's.

Ray is an optional extra (`pip install -e ".[ray]"`); it is imported only here.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from ...core.errors import UserError
from ...core.plugins import load_plugins
from ...core.plugins import loaded as loaded_plugins
from .run import (
    BENCH_FILE,
    BenchConfig,
    BenchResult,
    _Data,
    ensure_poison,
    finish_bench,
    prepare_bench,
    train_run,
    validate,
)


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray needs Ray: pip install -e ".[ray]"') from None
    return ray


def _quiet(_message: str) -> None:
    pass


def _craft(config: BenchConfig, out: str, plugins: list[str], file: str) -> str:
    """A Ray task: the poison `file` of the plan, crafted into the folder (once; reused if already there), with the
    driver's plugins loaded first (a worker is another process: the names they register are not there otherwise)."""
    from ..workspace import Workspace
    from .run import make_plan

    load_plugins(plugins)
    spec = next(p for p in make_plan(config).poisons if p.file == file)
    ensure_poison(Workspace(out, BENCH_FILE, "bench"), spec, _Data(config), config, False, _quiet, [])
    return file


def _train(config: BenchConfig, out: str, plugins: list[str], run_dir: str, *poisons: str) -> dict[str, Any]:
    """A Ray task: one run of the plan trained (or resumed) in the folder, the driver's plugins loaded first.
    `poisons` are the crafting tasks it waits for (Ray passes their results once they are done)."""
    from ..workspace import Workspace
    from .run import make_plan

    load_plugins(plugins)
    run = next(r for r in make_plan(config).runs if r.dir == run_dir)
    done, after = train_run(Workspace(out, BENCH_FILE, "bench"), run, _Data(config), config, False, _quiet, run_dir)
    return {"run": run_dir, "epochs_before": done, "epochs_after": after}


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` ("auto": the one this machine belongs to), or start a local one."""
    ray = _ray()
    if address and address != "auto":
        _check_reachable(address)  # Ray itself retries an unreachable address for minutes
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: {e}") from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    import socket

    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not (port.isascii() and port.isdecimal() and 0 < int(port) < 65536):
        raise UserError(f"--address is auto or HOST:PORT (a port in 1..65535), got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None


def check_fits(ray, asked: dict[str, float]) -> None:
    """Refuse a task no node of the cluster can ever hold (Ray would keep it pending forever, without a word)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
    for key, amount in asked.items():
        most = max((float(r.get(key, 0)) for r in nodes), default=0.0)
        if amount > most:
            flag = f"--{key.lower()}s-per-run"
            raise UserError(
                f"{flag} {amount:g}: no node of the Ray cluster has that many {key}s (the largest has {most:g}); "
                "every task would wait forever"
            )


def run_bench_on_ray(
    config: BenchConfig,
    out: str | Path,
    *,
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    max_retries: int = 3,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
    report: bool = True,
    num_cpus: int | None = None,
    env: dict[str, str] | None = None,
) -> BenchResult:
    """The bench with its tasks on Ray. `num_cpus` sizes a local cluster (no `address`); `env` is set in the
    workers (tests use it for fault injection)."""
    finite = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (cpus_per_run, gpus_per_run))
    if not finite or not cpus_per_run > 0 or gpus_per_run < 0 or max_retries < 0:
        raise UserError(
            f"--cpus-per-run must be > 0, --gpus-per-run >= 0 (finite numbers), retries >= 0 "
            f"(got {cpus_per_run}, {gpus_per_run}, {max_retries})"
        )
    say = log or (lambda _m: None)
    t_start = time.perf_counter()
    validate(config)  # names and numbers first: cheaper than starting a cluster
    ray = _ray()
    connect(address, num_cpus)  # an unreachable cluster or one without GPUs is refused before the folder is touched
    if gpus_per_run > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        raise UserError("--gpus-per-run asks for GPUs, but the Ray cluster has none")
    check_fits(ray, {"CPU": cpus_per_run, "GPU": gpus_per_run})
    ws, plan, _ = prepare_bench(config, out, overwrite=overwrite)
    # each worker runs torch with as many threads as the CPUs its task holds (Ray sets OMP_NUM_THREADS likewise)
    threads = {"OMP_NUM_THREADS": str(max(1, int(cpus_per_run)))}
    options = {
        "num_cpus": cpus_per_run,
        "num_gpus": gpus_per_run,
        "max_retries": max_retries,
        "runtime_env": {"env_vars": {**threads, **(env or {})}},
    }
    craft_task = ray.remote(_craft).options(**options)
    train_task = ray.remote(_train).options(**options)
    root = str(ws.root)
    plugins = loaded_plugins()
    crafted: dict[str, Any] = {}
    for p in plan.poisons:
        if not ws.path(p.file).exists() and any(r.poison == p.file for r in plan.runs):
            crafted[p.file] = craft_task.remote(config, root, plugins, p.file)
    pending = {}
    for run in plan.runs:
        if (ws.path(run.dir) / "summary.json").exists():
            continue
        deps = [crafted[run.poison]] if run.poison in crafted else []
        pending[train_task.remote(config, root, plugins, run.dir, *deps)] = run.dir
    result = BenchResult(ws.root, complete=False, crafted=list(crafted))
    say(f"ray: {len(crafted)} poison(s) to craft, {len(pending)} run(s) to train on {ray.cluster_resources()}")
    refs, done = list(pending), 0
    try:
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            info = ray.get(ready[0])
            done += 1
            result.trained.append(info["run"])
            result.epochs_trained += info["epochs_after"] - info["epochs_before"]
            resumed = f" (resumed after epoch {info['epochs_before']})" if info["epochs_before"] else ""
            say(f"[{done}/{len(pending)}] {info['run']} finished{resumed}")
            result.runs.append(info)
    except ray.exceptions.RayTaskError as e:  # a task's own error (a UserError in a worker): one line
        raise UserError(f"a bench task failed: {str(e.cause) if e.cause else e}") from None
    finish_bench(ws, plan, result, report, say, 120.0, t_start)
    return result
