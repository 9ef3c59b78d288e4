"""DC: DeepConfuse (Feng, Cai, Zhou. "Learning to Confuse: Generating Training Time Adversarial Data with
Auto-Encoder", NeurIPS 2019; code: github.com/kingfengji/DeepConfuse).

A noise generator g_xi (an auto-encoder: a U-Net with a tanh output) maps every image to its poison
x' = clip(x + eps * g_xi(x), 0, 1). It is trained against an imaginary victim f_theta so that training on the
poison *confuses* the victim on clean data:

    max_xi  E_(x,y) L(f_theta*(xi)(x), y)   s.t.  theta*(xi) = argmin_theta E L(f_theta(x + g_xi(x)), y).

The paper solves this bi-level problem by following the victim's training trajectory and, at every step,
differentiating through one *pseudo-update* of the victim (its memory-efficient Algorithm 2, which the public
code runs). Per trial t = 1..T the victim restarts from a random init and trains for `cls_epochs` epochs; per
mini-batch (x, y):

  1. pseudo-update:  theta' = theta - unroll_lr * grad_theta L(f_theta(x + eps g'(x)), y)   (create_graph)
  2. generator step: xi' <- xi' + Adam(grad_xi' L(f_theta'(x), y))     (ascend the clean loss, through step 1)
  3. victim step:    theta <- theta - cls_lr * grad_theta L(f_theta(x + eps g(x)), y)   (plain SGD)

g' is a copy of the generator that learns during the trial while the victim trains on the poison of the frozen
g (eval mode); g <- g' at the end of every trial (the paper's target-network trick for stability). The poison
is made with the final generator in eval mode.

Settings (`paper` preset = the paper's text, CIFAR-10):
  victim   a CNN of 5 conv layers (32, 64, 128, 128, 128 channels, 3x3, ReLU, each followed by 2x2 pooling),
           SGD lr 0.01, batch 64; T = 500 trials.  generator  the U-Net (64-128-256-512, BatchNorm, average
           pooling, bilinear upsampling, a 1x1 conv + BatchNorm + tanh head), Adam lr 1e-4.
  maxiter  the paper does not state it for CIFAR-10; the public code trains the victim 20 epochs per trial.

The victim (`victim`; `extra["victim"]` and the poison's variant name the one that ran):
  "cnn5"   the paper's text (the `paper` preset's default): ConfuseCNN below.
  "vgg11"  the public code's `create_net` (CIFAR/models/vgg.py), against which its released generator was
           trained: kuangliu's VGG-11 with BatchNorm and biased convs, then a 1x1 conv to 2 units and a
           Linear(2, classes) head (`vgg_bottleneck=2`; None puts the linear head straight on the last conv).
  any other registered model (resnet18, vgg16, lenet5...), built by uebench.models. (The registry's own vgg11
           is not reachable by that name here; `victim="vgg11", vgg_bottleneck=None` is it up to the conv biases.)
The 5-conv victim has no BatchNorm: with PyTorch's default init and plain SGD at lr 0.01 it stays at chance for
the first epochs (measured on 5,085 CIFAR-10 images: loss 2.30 after 3 epochs, even at lr 0.05), so in a short
run the generator gets no signal. The `fast` preset therefore uses the public code's victim, VGG-11 with
BatchNorm at 1/8 width, without its 2-unit bottleneck (which learns too slowly for a few epochs: 21% against 53%
train accuracy after 3 epochs on 2,000 `scenes` images at lr 0.05), and lr 0.05, with a small U-Net (8 channels)
and 3 trials of 3 epochs.

Where the public code differs from the paper (`victim="vgg11", batch_size=256, trials=1000` for its run):
  - victim: the code's `create_net` is the VGG-11 above, not the 5-conv CNN; batch 256, 1000 trials, SGD
    without momentum;
  - the code keeps, after each trial, the generator whose poison gives the lowest *test* accuracy to a scratch
    model trained 20 epochs: model selection on the test set. Here the last generator is returned, as in the
    paper's Algorithm 2 (no test data is touched while crafting);
  - the paper and the code train at eps = 0.032 (8.16/255); the benchmark budget, and the default here, is 8/255.
    APBench applies the authors' released eps=0.032 CIFAR-10 generator at 8/255, also to CIFAR-100 and SVHN.
The generator's parameter names match the public UNet(3), so its released CIFAR-10 checkpoint
(`pretrained/atk.0.032.best.pth`, a torch state dict) loads with `generator=PATH` at gen_width=64, gen_depth=3.

Compute (`epoch_equivalents`, in forward+backward passes over the crafting set, of either network; a forward
alone counts 1/3): one generator step is 4 victim passes, the pseudo-update's forward and graph-keeping backward
(1), the clean loss of theta' (1) and the backward through both (reverse-over-reverse, about twice a pass: 2),
which is what it costs for the 5-conv victim (measured 4.0x a plain training step); with BatchNorm victims the
double backward is slower in wall-clock (7.4x for VGG-11 at 1/8 width on CPU). Add the victim's own step (1),
the generator g' (1) and the frozen generator's forward (1/3): 6 1/3 passes per image per victim epoch. The
U-Net costs more FLOPs per pass than a small victim; `extra` gives each network's passes separately.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..core.errors import UserError
from ..core.io import atomic_write_bytes, utf8_path
from ..core.options import MAX_DEPTH, MAX_EPOCHS, MAX_FEATURES, MAX_IMAGES, MAX_STEPS, Count
from ..core.progress import progress_bar
from ..core.runtime import resolve_device
from ..core.seeds import crafting_stream, generator, seeded
from ..data.base import ImageDataset
from ..models import MODELS, create_model
from ..models.registry import scaled
from ..training.trainer import prepare
from ._crafting import crafting_precision, exact_input, precision_context
from .base import Attack, Perturbation, register_attack

# the paper's victim and the public code's; any other registered model name (resnet18, lenet5...) also works
VICTIMS = ("cnn5", "vgg11")
_CKPT_KEY = "uebench_dc_generator"


@dataclass
class DCConfig:
    eps: float = 8 / 255  # the paper and code: 0.032
    trials: Annotated[int, Count(MAX_STEPS, low=0)] = 500  # T: the victim restarts from a random init this many times
    cls_epochs: Annotated[int, Count(MAX_EPOCHS)] = 20  # victim epochs per trial (maxiter; the public code's clsepochs)
    batch_size: Annotated[int, Count(MAX_IMAGES)] = 64
    cls_lr: float = 0.01  # victim SGD learning rate (no momentum)
    unroll_lr: float | None = None  # step of the pseudo-update; None: cls_lr, as in the paper
    gen_lr: float = 1e-4  # Adam
    gen_width: Annotated[int, Count(MAX_FEATURES)] = 64  # U-Net channels at full resolution, doubled at every level
    gen_depth: Annotated[int, Count(MAX_DEPTH)] = 3  # U-Net down-samplings
    victim: str = "cnn5"  # cnn5 (the paper's text) | vgg11 (the public code's) | any registered model
    cls_width: float = 1.0  # victim width multiplier
    vgg_bottleneck: Annotated[int | None, Count(MAX_FEATURES)] = (
        2  # vgg11 only: the public code's 2-unit layer before the head; None: no such layer
    )
    generator: str | None = (
        None  # a trained generator to apply as is (this attack's .safetensors, or the authors' .pth)
    )
    save_generator: str | None = None  # write the trained generator here (safetensors)
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16: the generator's and the victims' passes (crafting.ModelConfig)
    gen_batch: Annotated[int, Count(MAX_IMAGES)] = (
        256  # images per batch when applying the generator (eval mode: only speed depends on it)
    )


# ---- networks -------------------------------------------------------------------------------------------------
def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet(nn.Module):
    """The noise generator g: a U-Net with outputs in (-1, 1). Layer names follow the public code's UNet so
    that its checkpoints load; width and depth are free (the public one is width 64, depth 3)."""

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 3):
        super().__init__()
        self.depth = depth
        widths = [width * 2**i for i in range(depth + 1)]
        cin = channels
        for i, w in enumerate(widths):
            setattr(self, f"dconv_down{i + 1}", _double_conv(cin, w))
            cin = w
        for i in range(depth, 0, -1):
            setattr(self, f"dconv_up{i}", _double_conv(widths[i] + widths[i - 1], widths[i - 1]))
        # BatchNorm before tanh keeps the output spread out, so the noise cannot collapse to zero
        self.conv_last = nn.Sequential(nn.Conv2d(width, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")  # any size, e.g. 28x28 MNIST
        skips = []
        for i in range(1, self.depth + 1):
            x = getattr(self, f"dconv_down{i}")(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = getattr(self, f"dconv_down{self.depth + 1}")(x)
        for i in range(self.depth, 0, -1):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = getattr(self, f"dconv_up{i}")(torch.cat([x, skips[i - 1]], dim=1))
        return torch.tanh(self.conv_last(x))[..., :h, :w]


class ConfuseCNN(nn.Module):
    """The paper's victim for CIFAR-10 and ImageNet: 5 conv layers (32, 64, 128, 128, 128), 3x3, ReLU, each
    followed by 2x2 max pooling, then a linear layer (global average over what is left, 1x1 at 32x32)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        layers, c = [], in_channels
        for ch in (32, 64, 128, 128, 128):
            layers += [nn.Conv2d(c, scaled(ch, width), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c = scaled(ch, width)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class ConfuseVGG(nn.Module):
    """The public code's victim (CIFAR/models/vgg.py, VGG('VGG11')): 3x3 convs with bias, BatchNorm and ReLU
    (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M), then a 1x1 conv to `bottleneck` (2) units and a linear
    head on them. Its flatten assumes 1x1 maps (32x32 inputs); here a global average does the same there and lets
    other sizes through (ceil-mode pooling, as ConfuseCNN). bottleneck=None: the linear head on the last conv."""

    CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, bottleneck: int | None = 2):
        super().__init__()
        layers, c = [], in_channels
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                out = scaled(v, width)
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        if bottleneck is not None:  # their nn.Conv2d(512, 2, kernel_size=1), at the end of `features`
            layers.append(nn.Conv2d(c, bottleneck, 1))
            c = bottleneck
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def seeded_build(seed: int, build):
    """Build a module with its init drawn from `seed` only (the global RNG is left as it was)."""
    with seeded(seed):
        return build()


def make_generator(cfg: DCConfig, channels: int, seed: int) -> UNet:
    return seeded_build(crafting_stream(seed, 1), lambda: UNet(channels, cfg.gen_width, cfg.gen_depth))


def make_classifier(cfg: DCConfig, ds: ImageDataset, seed: int, trial: int) -> nn.Module:
    """The victim of trial `trial`, freshly initialised from (seed, trial)."""
    c, h, _ = ds.shape
    k, w = ds.num_classes, cfg.cls_width
    if cfg.victim == "cnn5":
        build = lambda: ConfuseCNN(k, c, w)  # noqa: E731
    elif cfg.victim == "vgg11":
        build = lambda: ConfuseVGG(k, c, w, cfg.vgg_bottleneck)  # noqa: E731
    else:
        build = lambda: create_model(cfg.victim, num_classes=k, in_channels=c, image_size=h, width=w)  # noqa: E731
    return seeded_build(crafting_stream(seed, 2, trial), build)


def describe_victim(cfg: DCConfig) -> str:
    """Which victim the generator was trained against, in words (the poison's variant and extra say it)."""
    if cfg.victim == "cnn5":
        return "cnn5 (the paper's 5-conv CNN)"
    if cfg.victim == "vgg11":
        head = "no bottleneck" if cfg.vgg_bottleneck is None else f"{cfg.vgg_bottleneck}-unit bottleneck"
        public = " (the public code's)" if cfg.vgg_bottleneck == 2 else ""
        return f"vgg11{public}, {head}"
    return f"{cfg.victim} (registry model)"


# ---- the bi-level step --------------------------------------------------------------------------------------------
def poison(gen: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + eps * gen(x)).clamp(0.0, 1.0)


def unrolled_clean_loss(
    gen: nn.Module, clf: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, lr: float
) -> torch.Tensor:
    """L(f_theta'(x), y) with theta' = theta - lr * grad L(f_theta(x + eps g(x)), y): the generator's objective,
    differentiable in g's parameters (the victim's own parameters are left untouched)."""
    params = dict(clf.named_parameters())
    loss = F.cross_entropy(functional_call(clf, params, (poison(gen, x, eps),)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    updated = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
    return F.cross_entropy(functional_call(clf, updated, (x,)), y)


def generator_step(gen: nn.Module, opt: torch.optim.Optimizer, clf: nn.Module, x, y, eps: float, lr: float) -> float:
    """One Adam step of g' that ascends the clean loss of the pseudo-updated victim."""
    objective = unrolled_clean_loss(gen, clf, x, y, eps, lr)
    gen_params = [p for p in gen.parameters() if p.requires_grad]
    grads = torch.autograd.grad(-objective, gen_params)  # only g' gets gradients, never the victim
    for p, g in zip(gen_params, grads):
        p.grad = g
    opt.step()
    return float(objective.detach())


def victim_step(clf: nn.Module, opt: torch.optim.Optimizer, x_poison: torch.Tensor, y: torch.Tensor) -> float:
    loss = F.cross_entropy(clf(x_poison), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if not torch.isfinite(loss):
        raise UserError("dc: the victim diverged while crafting (loss is NaN or infinite); lower cls_lr")
    return float(loss.detach())


@torch.no_grad()
def apply_generator(gen: nn.Module, x: torch.Tensor, eps: float, batch: int) -> torch.Tensor:
    """delta = clip(x + eps g(x)) - x for every image, with g in eval mode (its BatchNorm running statistics)."""
    was_training = gen.training
    gen.eval()
    delta = torch.cat([poison(gen, xb, eps) - xb for xb in x.split(batch)])
    gen.train(was_training)
    # tanh < 1 keeps |delta| < eps in exact arithmetic; the clamp guards float rounding of x + eps*g - x
    return delta.clamp_(-eps, eps)


# ---- checkpoints -------------------------------------------------------------------------------------------------
def save_generator(gen: UNet, path: str | Path, channels: int, cfg: DCConfig) -> None:
    from safetensors.torch import save

    arch = {"channels": channels, "gen_width": cfg.gen_width, "gen_depth": cfg.gen_depth, "eps": cfg.eps}
    tensors = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={_CKPT_KEY: json.dumps(arch, sort_keys=True)}))


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, architecture metadata) from this attack's safetensors file or a plain torch state dict."""
    from safetensors import safe_open

    try:
        with utf8_path(path) as name, safe_open(name, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(_CKPT_KEY, "{}"))
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception:
        pass
    try:  # the public code's torch.save(state_dict); weights_only never runs pickled code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"dc: generator checkpoint {path} is neither a uebench "
            f"safetensors file nor a torch state dict ({type(e).__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"dc: generator checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}, {}


def load_generator(path: str | Path, channels: int, cfg: DCConfig) -> UNet:
    """A generator from a checkpoint, checked against the configured architecture (one clear line if not)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dc: generator checkpoint not found: {path}")
    state, meta = _read_checkpoint(path)
    gen = UNet(channels, cfg.gen_width, cfg.gen_depth)
    expected = gen.state_dict()
    wrong = sorted(set(expected) ^ set(state)) or [k for k in expected if expected[k].shape != state[k].shape]
    if wrong:
        saved = (
            f" (it was saved for {meta['channels']}-channel images with "
            f"gen_width={meta['gen_width']}, gen_depth={meta['gen_depth']})"
            if meta
            else ""
        )
        raise UserError(
            f"dc: generator checkpoint {path} does not fit a U-Net "
            f"with gen_width={cfg.gen_width}, gen_depth={cfg.gen_depth} "
            f"for {channels}-channel images{saved}; first mismatch: {wrong[0]}"
        )
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise UserError(f"dc: generator checkpoint {path} holds NaN or infinite weights")
    gen.load_state_dict(state)
    return gen


# ---- the attack ------------------------------------------------------------------------------------------------------
@register_attack
class DC(Attack):
    name: ClassVar[str] = "dc"
    norm: ClassVar[str] = "linf"
    description: ClassVar[str] = (
        "DeepConfuse: a U-Net noise generator trained through the victim's one-step-unrolled update"
    )
    Config: ClassVar[type] = DCConfig
    presets: ClassVar[dict] = {
        # CPU-sized: an 8-channel, 2-level U-Net against the public code's VGG-11-BN at 1/8 width, without its
        # 2-unit bottleneck (the paper's BatchNorm-free CNN and the bottleneck both learn too slowly in a few
        # epochs, giving the generator no signal), 3 trials of 3 epochs, victim lr 0.05 and Adam 10x the paper's
        "fast": {
            "trials": 3,
            "cls_epochs": 3,
            "batch_size": 128,
            "cls_lr": 0.05,
            "gen_lr": 1e-3,
            "gen_width": 8,
            "gen_depth": 2,
            "victim": "vgg11",
            "cls_width": 0.125,
            "vgg_bottleneck": None,
        },
    }

    def budget(self) -> float:
        return self.config.eps

    def describe_variant(self) -> str:
        c = self.config
        if c.generator is not None:
            return "pretrained generator"  # no victim ran here
        if c.victim == "cnn5":
            return "paper (cnn5 victim)"
        if c.victim == "vgg11" and c.vgg_bottleneck == 2:
            return "public-code (vgg11 victim)"
        return f"victim {describe_victim(c)}"

    def validate(self, ds: ImageDataset) -> None:
        c = self.config
        super().validate(ds)
        if not isinstance(c.victim, str) or (c.victim not in VICTIMS and c.victim not in MODELS.names()):
            others = ", ".join(n for n in MODELS.names() if n not in VICTIMS)
            valid = f"cnn5 (the paper), vgg11 (the public code), or a model: {others}"
            raise UserError(f"dc: unknown victim {c.victim!r}; valid: {valid}")
        b = c.vgg_bottleneck
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise UserError(f"dc: vgg_bottleneck must be an integer >= 1 (units before the head) or None, got {b!r}")
        for key in ("cls_lr", "gen_lr", "cls_width", *(("unroll_lr",) if c.unroll_lr is not None else ())):
            v = getattr(c, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise UserError(f"dc: {key} must be a positive number, got {v!r}")
        for key, least in (
            ("trials", 0),
            ("cls_epochs", 1),
            ("batch_size", 1),
            ("gen_width", 1),
            ("gen_depth", 0),
            ("gen_batch", 1),
        ):
            v = getattr(c, key)
            if not isinstance(v, int) or v < least:
                raise UserError(f"dc: {key} must be an integer >= {least}, got {v!r}")
        if len(ds) == 0:
            raise UserError("dc: the crafting set is empty")
        if ds.num_classes < 2:
            raise UserError(f"dc: needs at least 2 classes to confuse a classifier, {ds.name} has {ds.num_classes}")
        crafting_precision(c.precision, resolve_device(c.device))
        if c.generator is not None:
            load_generator(c.generator, ds.shape[0], c)  # refuse a bad checkpoint before any work

    def perturb(self, ds: ImageDataset, *, seed: int, progress: bool) -> Perturbation:
        # craft in dataset-index order: batches, and so the generator, then do not depend on the order given
        order = torch.argsort(ds.indices)
        with precision_context(self.config):
            pert = self._perturb(ds.subset(order), seed, progress)
        delta = torch.empty_like(pert.delta)
        delta[order] = pert.delta
        return Perturbation(delta, pert.epoch_equivalents, pert.extra)

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = resolve_device(c.device)
        x = prepare(ds.images, device, channels_last=True)  # mkldnn/cudnn convolutions run faster channels-last
        y = ds.labels.to(device)
        if c.generator is not None:
            gen = _to(load_generator(c.generator, ds.shape[0], c), device)
            # no victim here: a checkpoint does not say what it was trained against
            extra = {
                "generator": str(c.generator),
                "trained": False,
                "victim": None,
                "victim_passes": 0.0,
                "generator_passes": 1 / 3,
            }
        else:
            gen, extra = self._train(x, y, ds, seed, device, progress)
            extra["trained"] = True
            extra["victim"] = describe_victim(c)
        if c.save_generator:
            save_generator(gen, c.save_generator, ds.shape[0], c)
        delta = apply_generator(gen, x, c.eps, c.gen_batch).cpu().contiguous()
        return Perturbation(delta, extra["victim_passes"] + extra["generator_passes"], extra)

    def _train(self, x, y, ds: ImageDataset, seed: int, device, progress: bool) -> tuple[UNet, dict]:
        c = self.config
        unroll_lr = c.cls_lr if c.unroll_lr is None else c.unroll_lr
        learner = _to(make_generator(c, ds.shape[0], seed), device).train()  # g': learns during a trial
        frozen = _to(make_generator(c, ds.shape[0], seed), device).eval()  # g: makes the victim's training data
        gen_opt = torch.optim.Adam(learner.parameters(), lr=c.gen_lr)
        shuffle = generator(crafting_stream(seed, 3))
        steps_per_epoch = -(-len(x) // c.batch_size)
        bar = progress_bar(progress, c.trials * c.cls_epochs * steps_per_epoch, "dc (generator)")
        objective, victim_loss = [], []
        for t in range(c.trials):
            frozen.load_state_dict(learner.state_dict())
            clf = exact_input(_to(make_classifier(c, ds, seed, t), device), c).train()  # it sees x + delta
            clf_opt = torch.optim.SGD(clf.parameters(), lr=c.cls_lr)
            trial_obj, trial_loss = [], []
            for _ in range(c.cls_epochs):
                for idx in torch.randperm(len(x), generator=shuffle).to(device).split(c.batch_size):
                    xb, yb = x[idx], y[idx]
                    trial_obj.append(generator_step(learner, gen_opt, clf, xb, yb, c.eps, unroll_lr))
                    with torch.no_grad():
                        xp = poison(frozen, xb, c.eps)
                    trial_loss.append(victim_step(clf, clf_opt, xp, yb))
                    if bar:
                        bar.update(1)
            objective.append(round(sum(trial_obj) / len(trial_obj), 5))
            victim_loss.append(round(sum(trial_loss) / len(trial_loss), 5))
            if bar:
                bar.set_postfix(trial=t + 1, objective=f"{objective[-1]:.3f}", victim=f"{victim_loss[-1]:.3f}")
        if bar:
            bar.close()
        epochs = c.trials * c.cls_epochs
        extra = {
            "unroll_lr": unroll_lr,
            # mean clean loss of the pseudo-updated victim per trial: what the generator ascends
            "objective_history": objective,
            "victim_poison_loss_history": victim_loss,
            "victim_passes": 5.0
            * epochs,  # pseudo-update 1, clean loss of theta' 1, the backward through both 2, victim step 1
            "generator_passes": epochs * (1 + 1 / 3) + 1 / 3,  # g' forward+backward, g forward; final application
        }
        return learner, extra


def _to(module: nn.Module, device: torch.device) -> nn.Module:
    return module.to(device).to(memory_format=torch.channels_last)
