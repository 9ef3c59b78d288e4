"""CP: contrastive poisoning (He, Zha, Katabi. "Indiscriminate Poisoning Attacks on Unsupervised Contrastive
Learning", ICLR 2023; code: github.com/kaiwenzha/contrastive-poisoning), sample-wise (CP-S).

EM's min-min game with the labels taken out: a crafting encoder and the noise both *minimise* a SimCLR contrastive
loss (NT-Xent between two augmented views of every image, temperature 0.5), so the noise becomes a shortcut that
makes any two views of an image trivially alike. No label enters the crafting, so it is a candidate for protection
that does not depend on the downstream task (the question of "How Far Are We from True Unlearnability?").

  1. `train_steps` SGD steps of the encoder (lr 0.5, momentum 0.9, wd 1e-4: SimCLR's CIFAR recipe) on two views
     of x + delta per batch of `batch_size` (512);
  2. `steps` signed-descent steps of `step` on every sample's delta against the frozen encoder, each through fresh
     views, projected onto the Linf ball of `eps` (8/255) and onto valid images;
  repeated for `rounds` rounds.

Views: a differentiable translation of up to 4 pixels with a flip (TAP's shift), then brightness and contrast
factors in [0.6, 1.4] and grey with probability 0.2, all drawn per image from the seed's streams (the public code
uses SimCLR's torchvision-style crop, colour jitter and grey through kornia). The projection head is the network's
last linear layer, of `proj_dim` (128) outputs, instead of SimCLR's two-layer MLP; the public code also learns the
noise jointly with the encoder for hundreds of epochs at this budget, which the `paper` preset's rounds approximate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.options import MAX_FEATURES, MAX_IMAGES, MAX_STEPS, Count
from ..core.progress import progress_bar
from ..core.seeds import seeded
from ..data.base import ImageDataset
from ..models import create_model
from . import _crafting as crafting
from .base import Perturbation, register_attack


@dataclass
class CPConfig(crafting.ModelConfig):
    eps: float = 8 / 255
    step: float = 0.8 / 255
    steps: Annotated[int, Count(MAX_STEPS)] = 5  # noise steps per sample per round
    rounds: Annotated[int, Count(MAX_STEPS)] = 100
    train_steps: Annotated[int, Count(MAX_STEPS)] = 20  # encoder steps per round
    precision: str = "fp32"  # fp32 by default until bf16's efficacy is measured on CP (docs/results/efficacy.md)
    batch_size: Annotated[int, Count(MAX_IMAGES)] = 512
    lr: float = 0.5
    weight_decay: float = 1e-4
    temperature: float = 0.5
    proj_dim: Annotated[int, Count(MAX_FEATURES)] = 128


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two views (n, d): each view's positive is its pair, the other 2n - 2 the negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    pair = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, pair)


def views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One differentiable augmented view per image: shift + flip, brightness, contrast, grey (p 0.2)."""
    n = len(x)
    v = crafting.shift_flip_transform(gen)(x)
    r = torch.rand(n, 3, generator=gen).to(x.device, x.dtype)
    v = v * (0.6 + 0.8 * r[:, 0]).view(-1, 1, 1, 1)
    mean = v.mean(dim=(1, 2, 3), keepdim=True)
    v = (v - mean) * (0.6 + 0.8 * r[:, 1]).view(-1, 1, 1, 1) + mean
    if v.shape[1] == 3:
        grey = (0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3]).expand_as(v)
        v = torch.where((r[:, 2] < 0.2).view(-1, 1, 1, 1), grey, v)
    return crafting.channels_last(v.clamp(0, 1))


@register_attack
class CP(crafting.ModelAttack):
    name: ClassVar[str] = "cp"
    description: ClassVar[str] = (
        "contrastive poisoning: min-min noise against a SimCLR encoder, no labels used (He et al. 2023, CP-S)"
    )
    Config: ClassVar[type] = CPConfig
    presets: ClassVar[dict] = {
        # CPU-sized: an eighth-width ResNet-18, 10 rounds of 10 encoder steps and 5 noise steps of 1.6/255
        "fast": {"width": 0.125, "rounds": 10, "train_steps": 10, "step": 1.6 / 255, "batch_size": 256},
    }

    def check(self, c: CPConfig) -> None:
        crafting.positive(self.name, step=c.step, lr=c.lr, temperature=c.temperature)
        crafting.at_least(self.name, 1, steps=c.steps, rounds=c.rounds, train_steps=c.train_steps, proj_dim=c.proj_dim)
        crafting.at_least(self.name, 2, batch_size=c.batch_size)

    def validate(self, ds: ImageDataset) -> None:
        super().validate(ds)
        if len(ds) < 2:  # NT-Xent contrasts an image's views with the batch's other images: one image has none
            raise UserError(f"cp: a contrastive encoder needs at least 2 images, got {len(ds)}")

    def encoder(self, ds: ImageDataset, seed: int, device: torch.device) -> torch.nn.Module:
        c = self.config
        ch, h, _ = ds.shape
        with seeded(seed):
            net = create_model(c.model, num_classes=c.proj_dim, in_channels=ch, image_size=h, width=c.width)
        return crafting.exact_input(net.to(device).to(memory_format=torch.channels_last), c)

    def contrastive(self, model, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return nt_xent(model(views(x, gen)), model(views(x, gen)), self.config.temperature)

    def _perturb(self, ds: ImageDataset, seed: int, progress: bool) -> Perturbation:
        c = self.config
        device = crafting.resolve_device(c.device)
        x, _ = crafting.tensors(ds, device)  # the labels play no part
        model = self.encoder(ds, seed, device)
        opt = crafting.sgd(model, c.lr, 0.9, c.weight_decay)
        batches = crafting.shuffled_batches(len(x), c.batch_size, crafting.generator(seed, 1), device, drop_last=True)
        train_gen, noise_gen = crafting.generator(seed, 2), crafting.generator(seed, 3)
        compute = crafting.Compute(len(x))
        noise = crafting.channels_last(torch.zeros_like(x))
        bar = progress_bar(progress, c.rounds, "cp", unit="round")
        losses: list[float] = []
        for _ in range(c.rounds):
            model.train()
            for _ in range(c.train_steps):
                idx = next(batches)
                loss = self.contrastive(model, (x[idx] + noise[idx]).clamp(0, 1), train_gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                compute.fb(2 * len(idx))
            noise = self.noise_pass(model, x, noise, noise_gen, compute)
            losses.append(round(self.mean_loss(model, x, noise, crafting.generator(seed, 4)), 5))
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if bar:
            bar.close()
        clean = round(self.mean_loss(model, x, torch.zeros_like(x), crafting.generator(seed, 4)), 5)
        extra = {
            "contrastive_loss_history": losses,
            "final_contrastive_loss": losses[-1],
            "clean_contrastive_loss": clean,
        }
        return Perturbation(crafting.to_cpu(noise), compute.epochs, extra)

    def noise_pass(self, model, x, noise, gen: torch.Generator, compute: crafting.Compute) -> torch.Tensor:
        """`steps` signed-descent steps on every sample's delta against the frozen encoder (eval mode), a batch of
        `batch_size` at a time (the negatives of NT-Xent are the batch's other images)."""
        c = self.config
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for idx in crafting.chunks(len(x), c.batch_size, x.device):
            if len(idx) < 2:
                continue  # NT-Xent needs a negative
            delta = noise[idx]
            for _ in range(c.steps):
                d = delta.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.contrastive(model, x[idx] + d, gen) * len(idx), d)
                delta = crafting.signed_step(d.detach(), grad, c.step, c.eps, x[idx], descend=True)
                compute.fb(2 * len(idx))
            noise[idx] = delta.detach()
        for p in model.parameters():
            p.requires_grad_(True)
        return noise

    @torch.no_grad()
    def mean_loss(self, model, x: torch.Tensor, noise: torch.Tensor, gen: torch.Generator) -> float:
        """The encoder's NT-Xent loss over the set (eval mode, batches of batch_size) on x + noise."""
        model.eval()
        total, n = 0.0, 0
        for idx in crafting.chunks(len(x), self.config.batch_size, x.device):
            if len(idx) >= 2:
                total += float(self.contrastive(model, (x[idx] + noise[idx]).clamp(0, 1), gen)) * len(idx)
                n += len(idx)
        return total / max(n, 1)
