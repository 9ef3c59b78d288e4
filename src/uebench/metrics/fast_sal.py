"""Fast SAL: the faithful search's answer at a small fraction of its cost.

The faithful procedure (sal.py) costs, per layer, 10 rounds x (2 training passes + 1 evaluation pass of two
models) over the whole augmented training set: about 600 epoch-equivalents per training epoch for ResNet-18.
This mode changes four things, each a pure saving or a first-order equivalent:

1. A fixed probe subset (default 1,024 images, seeded, the same every epoch), augmented once with a fixed draw of
   the run's own augmentation (`augment="recipe"`: crop+flip where the recipe trains with it, nothing where it
   trains without, as the faithful probe reads the data), or not at all (`"none"`). `"once"` draws crop+flip
   whatever the recipe: uebench 0.1.0's fast SAL, which on a run trained without augmentation measured the loss
   landscape of crops the model never saw (30-700x faithful's level on a memorised `cpu`-preset run); kept only
   to reproduce old numbers.
2. The frozen prefix is computed once. In eval mode BatchNorm is a fixed affine map, so everything that does
   not depend on the probed weight is a pure function of the (fixed) inputs: the model is traced with torch.fx,
   split at the probed layer into a prefix (cached: the probed layer's input and every other tensor the rest of
   the graph reads, e.g. a residual branch) and a suffix, and each step runs only the suffix.
3. Minibatch projected SGD on the subset (`step_rule="sgd"`): a round is one pass over the subset in the run's
   batch size with the faithful step size, the projection onto the ball as in the public code. The minibatch
   noise matters: it keeps the ascent off the exact maximum on the ball's edge, as it keeps the faithful search
   off it. `"full"` (uebench 0.1.0's rule: one full-batch step per round with lr x the SGD steps of one faithful
   pass) reaches that maximum and overshoots faithful's level on poisoned runs; see
   benchmarks/results/fast_vs_faithful.md, where the sgd rule meets the study's bar on 13 of 16 run-origins and
   the full rule on 10.
4. Fewer rounds (default 5) and an early stop once a projected step no longer moves the weights (a fixed point
   of projected gradient descent on the sphere): the loss there is already known.

Two corrections for what a small fixed subset gets wrong:
- `anchor` (on by default): the subset's loss level differs from the whole set's by a sampling error that is
  the same for every layer of a snapshot but not across snapshots, and #LP compares every epoch with one
  threshold. The anchor measures the loss of W0 once over the whole probe set (one forward pass) and shifts the
  subset's losses by the difference, so only the changes inside the ball come from the subset.
- `crossfit` (off by default since 0.2.0): split the subset into halves A and B, search on each and score each on
  the other half, so that directions fitting the subset's own noise do not count. On real poisons' snapshots it
  moved fast SAL no closer to faithful (the study above), at one forward more per round.

Best-of tracking starts at L0 exactly as in the faithful mode, so SAL >= 0 and a layer that does not reach the
loss has SAL 0 without any computation. Models torch.fx cannot trace, or layers called more than once, fall
back to running the whole model on the cached subset (points 1, 3 and 4 still hold).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
from torch.func import functional_call

from ..core.errors import UserError
from ..core.io import recorded
from .sal_common import (
    LossFn,
    ModelSAL,
    ProbeData,
    SALResult,
    eval_loss,
    layer_seed,
    origin_losses,
    project_to_ball,
    weight_key,
)

AUGMENT = ("recipe", "none", "once")
STEP_RULES = ("full", "sgd", "steps")
# options added after SAL records existed, with their unset values: absent from a record while unset
ADDED_LATER = {"rescore": False}
# what a record written before an option existed measured with: read back with these where absent
BEFORE_OPTION = {"step_rule": "full", "rescore": False}


@dataclass(frozen=True)
class FastSALConfig:
    """Options of the fast mode. `subset`: probe images; `augment`: "recipe" (one fixed draw of the run's own
    augmentation), "none", or "once" (one fixed crop+flip draw whatever the run trained with: the old default);
    `rounds`: projected-gradient rounds per branch; `step_scale`: the lr multiplier per round, None = the number
    of SGD steps one faithful pass over the full training set makes (source size // batch size); `tol`: stop a
    branch when a projected step moves the weights by less than tol x the ball radius; `chunk`: samples per
    forward/backward (memory only, the result is the same); `cache_prefix`: split the model at the layer;
    `crossfit`: search on one half of the subset, score on the other (both ways); `anchor`: level the subset's
    losses at W0's loss over the whole probe set; `step_rule`: "full" (one full-batch step per round), "steps" (a
    round is one pass over the subset in as many minibatch steps as a faithful pass over the whole set makes, each
    of the faithful step's size) or "sgd" (a round is a pass of minibatch SGD over the subset in the run's batch
    size): minibatch noise keeps the faithful ascent off the exact maximum on the ball's edge, which "full" reaches
    (on the fast-vs-faithful study's EM run, 2.8 against 3.4 on one layer, see benchmarks/results/fast_vs_faithful.md);
    `rescore`: score the search's highest and lowest points, and W0, on the whole probe set (one draw of its
    augmentation) instead of the subset, for two forward passes over the probe set per layer."""

    subset: int = 1024
    augment: str = "recipe"
    rounds: int = 5
    step_scale: float | None = None
    tol: float = 1e-3
    chunk: int = 512
    cache_prefix: bool = True
    crossfit: bool = False
    anchor: bool = True
    step_rule: str = "sgd"
    rescore: bool = False

    def __post_init__(self) -> None:
        if self.step_rule not in STEP_RULES:
            raise UserError(f"unknown fast-SAL step rule '{self.step_rule}'; valid: {', '.join(STEP_RULES)}")
        if self.augment not in AUGMENT:
            raise UserError(f"unknown fast-SAL augment '{self.augment}'; valid: {', '.join(AUGMENT)}")
        if self.subset < 1 or self.rounds < 1 or self.chunk < 1:
            raise UserError(
                f"fast SAL needs subset, rounds and chunk >= 1 (got {self.subset}, {self.rounds}, {self.chunk})"
            )

    def to_dict(self) -> dict:
        """The options as a SAL record keeps them (an option added later is absent while unset)."""
        return recorded(asdict(self), ADDED_LATER)


# ---- splitting the model at a layer ---------------------------------------------------------------------
@dataclass
class Split:
    """prefix(x) -> the frontier tensors; suffix(*frontier) -> the model's output. Both share the model's modules."""

    prefix: nn.Module
    suffix: nn.Module


DISCONNECTED = "disconnected"


def trace(model: nn.Module) -> fx.GraphModule | None:
    try:
        return fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow etc.: the caller falls back to the whole model
        return None


_TRACED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def cached_split(model: nn.Module, layer: str) -> Split | str | None:
    """split_at, with the trace and the splits made once per model object: probing every epoch reuses them (the
    weights change in place, the graph does not). A model whose forward pass follows mutable state (which heads
    run, say) names that state in a `trace_key` attribute, and gets one trace per value of it. The cache holds
    only graph modules, which share the model's submodules but not the model itself, so it goes with the model."""
    per_key = _TRACED.setdefault(model, {})
    key = getattr(model, "trace_key", None)
    if key not in per_key:
        per_key[key] = (trace(model), {})
    traced, splits = per_key[key]
    if traced is None:
        return None
    if layer not in splits:
        splits[layer] = split_at(model, traced, layer)
    return splits[layer]


def split_at(model: nn.Module, traced: fx.GraphModule, layer: str) -> Split | str | None:
    """Split the traced graph at the (single) call of module `layer`.

    Returns a Split, DISCONNECTED when the layer never reaches the output, or None when it cannot split
    (the layer is called more than once)."""
    nodes = list(traced.graph.nodes)
    calls = [n for n in nodes if n.op == "call_module" and n.target == layer]
    if not calls:
        return DISCONNECTED
    if len(calls) > 1:
        return None
    downstream: set[fx.Node] = set()
    for n in nodes:  # nodes are in topological order
        if n is calls[0] or any(a in downstream for a in n.all_input_nodes):
            downstream.add(n)
    output = next(n for n in nodes if n.op == "output")
    if output not in downstream:
        return DISCONNECTED
    frontier: list[fx.Node] = []
    for n in nodes:
        if n in downstream:
            for a in n.all_input_nodes:
                if a not in downstream and a.op != "get_attr" and a not in frontier:
                    frontier.append(a)

    suffix = fx.Graph()
    env: dict[fx.Node, fx.Node] = {f: suffix.placeholder(f"frontier_{i}") for i, f in enumerate(frontier)}
    for n in nodes:
        wanted = n in downstream or (n.op == "get_attr" and any(u in downstream for u in n.users))
        if wanted and n.op != "output":
            env[n] = suffix.node_copy(n, lambda a: env[a])
    suffix.output(fx.node.map_arg(output.args[0], lambda a: env[a]))

    prefix = fx.Graph()
    penv: dict[fx.Node, fx.Node] = {}
    for n in nodes:
        if n not in downstream and n.op != "output":
            penv[n] = prefix.node_copy(n, lambda a: penv[a])
    prefix.output(tuple(penv[f] for f in frontier))
    prefix_module = fx.GraphModule(model, prefix)
    prefix_module.graph.eliminate_dead_code()  # only what the frontier needs runs
    prefix_module.recompile()
    return Split(prefix_module, fx.GraphModule(model, suffix))


@torch.no_grad()
def cache_frontier(prefix: nn.Module, x: torch.Tensor, chunk: int) -> list[torch.Tensor] | None:
    """The prefix's outputs for every sample, or None if one is not a per-sample tensor (then: no cache)."""
    parts: list[list[torch.Tensor]] = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        outs = prefix(xb)
        if not all(isinstance(o, torch.Tensor) and o.ndim >= 1 and o.shape[0] == len(xb) for o in outs):
            return None
        parts.append(list(outs))
    return [torch.cat(cols) for cols in zip(*parts)]


# ---- the search -----------------------------------------------------------------------------------------
class _Objective:
    """Mean loss over fixed samples (and its gradient) as a function of the probed weight only."""

    def __init__(
        self,
        module: nn.Module,
        layer: str,
        inputs: list[torch.Tensor],
        targets: torch.Tensor,
        loss_fn: LossFn,
        chunk: int,
    ):
        self.module, self.layer, self.inputs, self.targets, self.loss_fn, self.chunk = (
            module,
            layer,
            inputs,
            targets,
            loss_fn,
            chunk,
        )
        self.key = weight_key(layer)

    def __len__(self) -> int:
        return len(self.targets)

    def part(self, index: torch.Tensor) -> "_Objective":
        return _Objective(
            self.module, self.layer, [t[index] for t in self.inputs], self.targets[index], self.loss_fn, self.chunk
        )

    def __call__(self, w: torch.Tensor, need_grad: bool) -> tuple[float, torch.Tensor | None]:
        n = len(self.targets)
        total, grad = 0.0, (torch.zeros_like(w) if need_grad else None)
        for i in range(0, n, self.chunk):
            args = tuple(t[i : i + self.chunk] for t in self.inputs)
            y = self.targets[i : i + self.chunk]
            if need_grad:
                wr = w.detach().requires_grad_(True)
                loss = self.loss_fn(functional_call(self.module, {self.key: wr}, args), y) * len(y)
                g = torch.autograd.grad(loss, wr, allow_unused=True)[0] if loss.requires_grad else None
                if g is not None:
                    grad += g
            else:
                with torch.no_grad():
                    loss = self.loss_fn(functional_call(self.module, {self.key: w}, args), y) * len(y)
            total += float(loss.detach())
        return total / n, (grad / n if grad is not None else None)


@dataclass
class _Search:
    """One projected-gradient trajectory: it follows `fit`'s gradient and is scored on `score` (None: on `fit`
    itself, which costs nothing more: the forward pass that gives the gradient gives the loss)."""

    fit: _Objective
    score: _Objective | None
    weight: float  # share of the samples it is scored on


def searches(objective: _Objective, crossfit: bool) -> list[_Search]:
    """In-sample: one search on the whole subset. Cross-fitted: halves A and B (alternate samples, so both keep
    the subset's class mix), each searched on one half and scored on the other. One sample cannot be split."""
    if not crossfit or len(objective) < 2:
        return [_Search(objective, None, 1.0)]
    n = len(objective)
    a, b = objective.part(torch.arange(0, n, 2)), objective.part(torch.arange(1, n, 2))
    return [_Search(a, b, len(b) / n), _Search(b, a, len(a) / n)]


@dataclass
class Extremes:
    """What a layer's search reached: the highest and lowest scored loss (-inf/+inf where no round ran), the rounds
    run, and each search's weight where it reached them (None where no round ran)."""

    high: float
    low: float
    ran: int
    at_high: list[torch.Tensor] | None = None
    at_low: list[torch.Tensor] | None = None


def fast_layer_search(
    parts: list[_Search],
    w0: torch.Tensor,
    *,
    eps: float,
    rounds: int,
    step: float,
    tol: float,
    shift: float = 0.0,
    batch: int | None = None,
    generator: torch.Generator | None = None,
    keep: bool = False,
) -> Extremes:
    """Projected gradient descent and ascent on the ball; returns the highest and the lowest loss the rounds reached
    (-inf/+inf where none ran: best-of tracking from L0 is applied by the caller), the rounds run and where. A
    round's loss is the sample-weighted mean of the searches' scores, plus `shift` (the anchor). `keep`: also return
    the weights where the extremes were reached (rescore).

    `batch` None: one full-batch step of `step` per round. `batch` b: a round is one pass of minibatch SGD over the
    fit samples in batches of b (`generator` shuffles), its steps summing to `step`: the faithful search's own noise,
    which on the sphere's edge keeps its ascent below the exact gradient's (see FastSALConfig.step_rule)."""
    if batch is not None:
        return _minibatch_search(
            parts, w0, eps=eps, rounds=rounds, step=step, shift=shift, batch=batch, gen=generator, keep=keep
        )
    radius = float(torch.linalg.vector_norm(w0)) * eps
    g0 = [s.fit(w0, need_grad=True)[1] for s in parts]
    best = {+1.0: math.inf, -1.0: -math.inf}  # +1 descends (L_min), -1 ascends (L_max): raw extremes, no L0
    at: dict[float, list[torch.Tensor] | None] = {+1.0: None, -1.0: None}  # each search's weight at the extreme
    ran = 0
    for sign in (+1.0, -1.0):
        ws, gs = [w0] * len(parts), list(g0)
        for r in range(rounds):
            if any(g is None for g in gs):  # the layer does not reach the loss
                break
            new = [project_to_ball(w - sign * step * g, w0, eps) for w, g in zip(ws, gs)]
            if all(float(torch.linalg.vector_norm(wn - w)) <= tol * radius for wn, w in zip(new, ws)):
                break  # a fixed point: its loss is the one already seen
            last = r == rounds - 1
            loss = shift
            for i, (s, wn) in enumerate(zip(parts, new)):
                if s.score is None:
                    fit_loss, gs[i] = s.fit(wn, need_grad=not last)
                    loss += s.weight * fit_loss
                else:
                    if not last:
                        gs[i] = s.fit(wn, need_grad=True)[1]
                    loss += s.weight * s.score(wn, need_grad=False)[0]
            ws = new
            ran = max(ran, r + 1)
            if sign > 0 and loss < best[sign] or sign < 0 and loss > best[sign]:  # NaN compares false
                best[sign] = loss
                if keep:
                    at[sign] = ws
    return Extremes(best[-1.0], best[+1.0], ran, at[-1.0], at[+1.0])


def _minibatch_search(parts, w0, *, eps, rounds, step, shift, batch, gen, keep) -> "Extremes":
    best = {+1.0: math.inf, -1.0: -math.inf}
    at: dict[float, list[torch.Tensor] | None] = {+1.0: None, -1.0: None}
    ran = 0
    for sign in (+1.0, -1.0):
        ws = [w0] * len(parts)
        for r in range(rounds):
            moved = [_sgd_pass(s.fit, w, sign, step, batch, gen) for s, w in zip(parts, ws)]
            if any(m is None for m in moved):  # the layer does not reach the loss
                break
            ws = [project_to_ball(m, w0, eps) for m in moved]
            loss = shift + sum(s.weight * (s.score or s.fit)(w, need_grad=False)[0] for s, w in zip(parts, ws))
            ran = max(ran, r + 1)
            if sign > 0 and loss < best[sign] or sign < 0 and loss > best[sign]:  # NaN compares false
                best[sign] = loss
                if keep:
                    at[sign] = ws
    return Extremes(best[-1.0], best[+1.0], ran, at[-1.0], at[+1.0])


def _sgd_pass(fit: _Objective, w: torch.Tensor, sign: float, step: float, batch: int, gen) -> torch.Tensor | None:
    """One shuffled pass of minibatch SGD over `fit`'s samples (drop_last, as the faithful pass), k steps of step/k;
    None where the layer does not reach the loss."""
    n = len(fit)
    k = max(1, n // batch)
    order = torch.randperm(n, generator=gen)
    for i in range(k):
        g = fit.part(order[i * batch : (i + 1) * batch] if k > 1 else order)(w, need_grad=True)[1]
        if g is None:
            return None
        w = w - sign * (step / k) * g
    return w


def _search_batch(rule: str, fit_size: int, data: ProbeData) -> int | None:
    """The minibatch of a round's SGD pass: none ("full"), the run's ("sgd"), or the size that makes a pass over the
    subset as many steps as a faithful pass over the whole set makes ("steps"), each of the faithful step's size."""
    if rule == "full":
        return None
    if rule == "sgd":
        return data.batch_size
    return max(1, fit_size // data.steps_per_pass())


def _scored(whole: _Objective, weights: list[torch.Tensor], parts: list[_Search]) -> float:
    """The searches' weights scored on the whole probe set, each by its share of the subset."""
    return sum(s.weight * whole(w, need_grad=False)[0] for s, w in zip(parts, weights))


def fast_model_sal(
    model: nn.Module,
    names: Sequence[str],
    data: ProbeData,
    *,
    eps: float,
    rounds: int,
    lr: float,
    origin: str,
    running_loss: float | None,
    seed: int,
    loss_fn: LossFn,
    config: FastSALConfig,
    progress: Callable[[int, int, str], None] | None = None,
) -> ModelSAL:
    """Fast SAL of `names` (the model is already in eval mode with its parameters frozen: see sal.probing);
    `progress(i, n, name)` as the i-th of the n layers starts."""
    # how the probe images are drawn: augmented once as the recipe trains (or crop+flip for "once", or not at all)
    drawn_as = {"augment_once": config.augment != "none", "augment": "crop_flip" if config.augment == "once" else None}
    fixed = (
        data
        if not (data.shuffle or data.augment) and len(data) <= config.subset
        else data.subset(config.subset, seed, **drawn_as)
    )
    x, y = fixed.prepare(fixed.inputs), fixed.targets
    step = lr * (config.step_scale if config.step_scale is not None else data.steps_per_pass())
    params = dict(model.named_parameters())
    anchored = config.anchor and fixed is not data
    shift = 0.0
    # W0's loss on the subset: the eval origin (always recorded), and the level the anchor moves
    level = _Objective(model, names[0], [x], y, loss_fn, config.chunk)(params[weight_key(names[0])], need_grad=False)[0]
    whole = None
    if config.rescore and fixed is not data:  # the whole probe set, one fixed draw of its augmentation
        drawn = data.subset(len(data), layer_seed(seed, "<anchor>"), **drawn_as)
        whole = (drawn.inputs, drawn.targets)
        w_first = params[weight_key(names[0])]
        shift = _Objective(model, names[0], [whole[0]], whole[1], loss_fn, config.chunk)(w_first, False)[0] - level
    elif anchored:  # one forward pass over the whole probe set (one augmentation draw)
        shift = eval_loss(model, data, torch.Generator().manual_seed(layer_seed(seed, "<anchor>")), loss_fn) - level
    origins = origin_losses(level + shift, running_loss)
    loss0 = origins[origin]
    out: dict[str, SALResult] = {}
    for i, name in enumerate(names, 1):
        if progress:
            progress(i, len(names), name)
        w0 = params[weight_key(name)].detach()
        split = cached_split(model, name) if config.cache_prefix and name else None  # "": the model is the layer
        if split == DISCONNECTED:
            out[name] = SALResult(name, 0.0, loss0, loss0, loss0, 0)
            continue
        module, inputs = model, [x]
        if isinstance(split, Split):
            cached = cache_frontier(split.prefix, x, config.chunk)
            if cached is not None:
                module, inputs = split.suffix, cached
        parts = searches(_Objective(module, name, inputs, y, loss_fn, config.chunk), config.crossfit)
        found = fast_layer_search(
            parts,
            w0,
            eps=eps,
            rounds=rounds,
            step=step,
            tol=config.tol,
            shift=shift,
            batch=_search_batch(config.step_rule, len(fixed) // (2 if config.crossfit else 1), data),
            generator=torch.Generator().manual_seed(layer_seed(seed, name)),
            keep=whole is not None,
        )
        eval_max, eval_min = found.high, found.low
        if whole is not None:
            scored = _Objective(model, name, [whole[0]], whole[1], loss_fn, config.chunk)
            eval_max, eval_min = (
                -math.inf if found.at_high is None else _scored(scored, found.at_high, parts),
                math.inf if found.at_low is None else _scored(scored, found.at_low, parts),
            )
        out[name] = SALResult.from_search(name, loss0, eval_max, eval_min, found.ran)
        del inputs, parts
    settings = {
        "eps": eps,
        "rounds": rounds,
        "lr": lr,
        "step": step,
        "batch_size": data.batch_size,
        "source_size": data.source_size,
        "probe_size": len(fixed),
        "anchor_shift": shift,
        **{k: v for k, v in config.to_dict().items() if k != "rounds"},
    }
    return ModelSAL(out, loss0, "fast", origin, settings, origins=origins)
