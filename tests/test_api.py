"""`import uebench` gives the public API and the registries' listings."""

from __future__ import annotations


def test_the_public_api_is_one_import():
    import uebench

    for name in uebench.__all__:
        assert getattr(uebench, name) is not None, name
    assert {
        "load",
        "create_model",
        "craft",
        "Poison",
        "train",
        "model_sal",
        "learnable_threshold",
        "unlearnable_distance",
        "run_bench",
    } <= set(dir(uebench))
    assert "resnet18" in uebench.list_models() and "em" in uebench.list_attacks() and "cpu" in uebench.list_recipes()
    assert callable(uebench.train) and uebench.TrainConfig().model == "resnet18"
