"""One seed, named streams: every random draw in uebench comes from a generator derived from (seed, purpose).

A run's seed never goes into torch's global generator for good: `seeded(seed)` draws a model's initial weights (or
runs an attack that uses the global generator) from the seed and puts the global state back afterwards, and every
other use of randomness takes its own `torch.Generator` from one of the derivations below. Adding a use of randomness
therefore shifts no other stream, and nothing depends on what ran before in the same process.

The derivations are the ones uebench has always used (the same seed gives the same bytes as before); each reduces
modulo 2**63 so that any seed `check_seed` accepts gives a valid generator seed.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator

import torch

_MOD = 2**63
_SPREAD = 1_000_003  # a prime: seeds s and s + 1 land far apart


def generator(value: int) -> torch.Generator:
    """A CPU generator seeded with `value` (one of the derivations below)."""
    return torch.Generator().manual_seed(value % _MOD)


def epoch_stream(seed: int, epoch: int) -> int:
    """The trainer's shuffle and augmentation stream of one epoch (0-based; a resumed run replays it exactly). The
    faithful SAL probe of epoch e (1-based) draws its augmentations from epoch_stream(seed, e) too."""
    return (seed * _SPREAD + epoch) % _MOD


def layer_stream(seed: int, layer: str) -> int:
    """A SAL layer's own stream, so its result does not depend on which other layers are probed."""
    return (seed * _SPREAD + zlib.crc32(layer.encode())) % _MOD


def crafting_stream(seed: int, purpose: int, step: int = 0) -> int:
    """An attack's stream for one purpose (an integer the attack names), and for DC one per step of its loop."""
    return (seed * _SPREAD + 7_919 * purpose + 104_729 * step + 17) % _MOD


def offset_stream(seed: int, offset: int) -> int:
    """A second stream next to `seed` (the landscape's evaluation subset: +7; its control run's batch order:
    +1_000_003, i.e. the next seed's epoch streams)."""
    return (seed + offset) % _MOD


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside, torch's global generator starts from `seed`; after, it is as it was (a model's init, or code that
    draws from the global generator, depends on the seed only)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % _MOD)
        yield
