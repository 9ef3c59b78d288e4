"""`uebench bench --plan`: what a bench would compute and a rough estimate of its time, computing and writing nothing.

    view = plan_bench(config, "runs/quick")     # every check the bench makes; the folder read, never written
    print(view.text())

The poisons and runs are the bench's own plan (run.make_plan), marked cached exactly as the bench reads them back
(run._finished, run.poison_made; a started run by its finished epochs). The estimate is a rough model, and says so:
one forward and backward pass of the bench's model on a few random images, timed on this machine, scaled by the
images each run's epochs, test evaluations and SAL probes pass through; crafting and the defenses' own costs are left
out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ...core.progress import clock_time
from ...training.bench_folder import BENCH_FILE, Plan, PoisonSpec, RunSpec
from ..workspace import Workspace
from .config import BenchConfig
from .run import _Data, _finished, check_bench, epochs_done, folder_state, poison_made, run_label, shard_runs


@dataclass
class Estimate:
    seconds: float
    basis: list[str] = field(default_factory=list)  # what the number rests on, one line each


@dataclass
class BenchPlanView:
    out: Path | None
    folder: str  # what the bench would do with --out
    poisons: list[tuple[PoisonSpec, bool]]  # (poison, cached)
    runs: list[tuple[RunSpec, int, bool, bool]]  # (run, epochs done, finished, trained by this process/shard)
    epochs: int
    estimate: Estimate

    @property
    def cached_runs(self) -> list[RunSpec]:
        return [r for r, _, finished, _ in self.runs if finished]

    def text(self) -> str:
        lines = [f"bench plan (nothing is crafted, trained or written): {self.folder}"]
        made = sum(c for _, c in self.poisons)
        lines.append(f"poisons: {len(self.poisons)} ({made} cached, {len(self.poisons) - made} to make)")
        width = max((len(p.label) for p, _ in self.poisons), default=0)
        for p, cached in self.poisons:
            what = "cached" if cached else ("to copy" if p.attack is None else "to craft")
            lines.append(f"  {p.label:<{width}}  seed {p.seed:<4} {p.file}  {what}")
        done = len(self.cached_runs)
        lines.append(f"runs: {len(self.runs)} ({done} cached, {len(self.runs) - done} to train)")
        width = max((len(run_label(r)) for r, *_ in self.runs), default=0)
        for r, epochs, finished, mine in self.runs:
            if finished:
                what = "cached"
            elif not mine:
                what = "another shard's"
            elif epochs:
                what = f"to train: {epochs} of {self.epochs} epochs done (resumes)"
            else:
                what = "to train"
            lines.append(f"  {run_label(r):<{width}}  {r.dir}  {what}")
        e = self.estimate
        lines.append(f"estimate (rough): ~{clock_time(e.seconds)} of training and SAL here")
        lines += [f"  {b}" for b in e.basis]
        return "\n".join(lines)


def plan_bench(
    config: BenchConfig,
    out: str | Path | None,
    *,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    timing: bool = True,
) -> BenchPlanView:
    """Everything the bench checks before it starts (UserError as it would), then its plan read against `out`."""
    from .run import check_shard

    check_shard(shard)
    plan, data = check_bench(config)
    reuse, folder = _folder(config, out, overwrite)
    root = Path(out) if out is not None else None
    mine = {r.dir for r in shard_runs(plan, shard)}
    runs = []
    for r in plan.runs:
        finished = reuse and _finished(root, r)
        runs.append((r, epochs_done(root / r.dir) if reuse and not finished else 0, finished, r.dir in mine))
    poisons = [(p, reuse and poison_made(root, p)) for p in plan.poisons]
    epochs = config.resolved_recipe().epochs
    estimate = _estimate(config, plan, data, runs, poisons, epochs) if timing else Estimate(0.0, ["not timed"])
    return BenchPlanView(root, folder, poisons, runs, epochs, estimate)


def _folder(config: BenchConfig, out: str | Path | None, overwrite: bool) -> tuple[bool, str]:
    """(whether the bench would reuse what --out holds, what it would do with it, in words)."""
    if out is None:
        return False, "no --out given: nothing is cached"
    ws = Workspace(Path(out), BENCH_FILE, "bench")
    fresh, record = folder_state(ws, config, overwrite)  # refuses as the bench would
    if not fresh:
        return True, f"{out} holds this bench: what is finished there is reused"
    if record is not None:
        return False, f"{out} holds a bench of another configuration: --overwrite replaces it, nothing is reused"
    if not Path(out).exists():
        return False, f"{out} does not exist: the bench creates it"
    return False, f"{out} holds no bench yet: the bench starts it there"


# ---- the rough time model -----------------------------------------------------------------------------------------
def _estimate(config: BenchConfig, plan: Plan, data: _Data, runs, poisons, epochs: int) -> Estimate:
    todo = [(r, done) for r, done, finished, mine in runs if mine and not finished]
    to_make = [p for p, cached in poisons if not cached and p.attack is not None]
    crafting = f"crafting {len(to_make)} poison(s) ({', '.join(p.label for p in to_make)})" if to_make else ""
    left_out = ", ".join(x for x in (crafting, "the defenses' own costs", "the shortcut probes") if x)
    if not todo:
        return Estimate(0.0, ["every run of this process is cached", f"not included: {left_out}"])
    per_image, timed = time_per_image(config, plan.runs[0], data)
    n_train = config.subset if config.subset is not None else len(data.train)
    n_test = len(data.test)
    layers = _layer_count(config, plan.runs[0], data)
    sal = config.sal
    per_epoch = (n_train + n_test / 3) * per_image
    per_probe, sal_basis = _sal_cost(config, n_train, layers, per_image)
    epochs_left = sum(epochs - done for _, done in todo)
    probes_left = sum(sum(1 for e in range(done + 1, epochs + 1) if e % sal.every == 0) for _, done in todo)
    seconds = epochs_left * per_epoch + probes_left * per_probe
    return Estimate(
        seconds,
        [
            f"{timed}: {per_image * 1e3:.3g} ms per image (a forward pass counted as 1/3 of it)",
            f"{len(todo)} run(s) to train, {epochs_left} epoch(s) of {n_train:,} training and {n_test:,} test images "
            f"(~{clock_time(per_epoch)} an epoch)",
            f"{probes_left} SAL probe(s) ({sal.mode}, every {sal.every} epoch(s)): {sal_basis} "
            f"(~{clock_time(per_probe)} a probe)",
            f"not included: {left_out}",
        ],
    )


def _sal_cost(config: BenchConfig, n_train: int, layers: int, per_image: float) -> tuple[float, str]:
    """The seconds of one SAL probe of `layers` layers, and the count it rests on (sal.py and fast_sal.py)."""
    sal = config.sal
    rounds = sal.rounds if sal.rounds is not None else (10 if sal.mode == "faithful" else 5)
    if sal.mode == "faithful":  # per layer and round: 2 training passes + an evaluation pass of two models
        images = layers * rounds * n_train * (2 + 2 / 3)
        basis = f"{layers} layers x {rounds} rounds x (2 passes + 2 forward passes) over {n_train:,} images"
    else:  # per layer and round: a pass over the subset for each branch, and its evaluation
        subset = min(sal.subset, n_train)
        images = layers * rounds * 2 * subset * (1 + 1 / 3) + (n_train / 3 if sal.anchor else 0)
        basis = f"{layers} layers x {rounds} rounds x 2 branches over {subset:,} images"
        if sal.rescore:
            images += layers * 2 * n_train / 3
            basis += f", rescored on {n_train:,}"
    return images * per_image, basis


def time_per_image(config: BenchConfig, run: RunSpec, data: _Data, images: int = 16, repeats: int = 2):
    """The seconds of one forward and backward pass per image of the bench's model, timed on a few random images
    on the bench's device and precision; and how it was measured, in words."""
    import torch

    from ...core.runtime import autocast_factory, resolve_device, resolve_precision
    from ...training.trainer import model_for, place_model

    tc = run.train_config()
    device = resolve_device(config.device)
    autocast = autocast_factory(device, resolve_precision(config.precision, device))
    shape = tuple(data.train.shape)
    model = place_model(model_for(tc, shape, data.train.num_classes), tc, device).train()
    b = max(1, min(images, config.resolved_recipe().batch_size))
    g = torch.Generator().manual_seed(0)
    x = torch.rand((b, *shape), generator=g).to(device)
    y = torch.randint(0, data.train.num_classes, (b,), generator=g).to(device)

    def step() -> None:
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # the first pass allocates and warms up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / (repeats * b)
    what = f"{config.model} x{config.width:g}" if config.width != 1 else config.model
    size = "x".join(map(str, shape))
    return seconds, f"a forward+backward pass of {what} on {b} random {size} images, timed on {device} here"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _layer_count(config: BenchConfig, run: RunSpec, data: _Data) -> int:
    from ...metrics.sal_common import resolve_layers
    from ...training.trainer import model_for

    return len(resolve_layers(model_for(run.train_config(), tuple(data.train.shape), data.train.num_classes), None))
