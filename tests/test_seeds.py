"""uebench.core.seeds: the named streams keep the numbers uebench always used, reach every seed check_seed accepts, and
seeded() leaves torch's global generator as it found it."""

from __future__ import annotations

import torch

from uebench.core import seeds
from uebench.core.options import MAX_SEED


def test_streams_are_the_historical_formulas_for_ordinary_seeds():
    assert seeds.epoch_stream(3, 4) == 3 * 1_000_003 + 4
    assert seeds.crafting_stream(3, 2) == 3 * 1_000_003 + 7_919 * 2 + 17
    assert seeds.crafting_stream(3, 2, 5) == 3 * 1_000_003 + 7_919 * 2 + 104_729 * 5 + 17
    assert seeds.offset_stream(3, 7) == 10
    assert len({seeds.layer_stream(0, n) for n in ("conv1", "layer1.0.conv1", "linear")}) == 3


def test_every_accepted_seed_gives_a_valid_generator():
    for value in (
        seeds.epoch_stream(MAX_SEED, 9),
        seeds.crafting_stream(MAX_SEED, 3, 2),
        seeds.layer_stream(MAX_SEED, "x"),
    ):
        assert 0 <= value < 2**63
        seeds.generator(value)  # torch refuses seeds outside its range


def test_seeded_draws_from_the_seed_and_restores_the_global_generator():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeds.seeded(5):
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with seeds.seeded(5):
        b = torch.rand(3)
    assert torch.equal(a, b)


def test_the_largest_seed_trains(tmp_path):
    from uebench.training.trainer import TrainConfig, train

    config = TrainConfig(
        model="linear",
        recipe="quick",
        epochs=1,
        batch_size=16,
        seed=MAX_SEED,
        dataset_options={"n_train": 32, "n_test": 16},
        precision="fp32",
    )
    assert len(train(config, progress=False).history) == 1
