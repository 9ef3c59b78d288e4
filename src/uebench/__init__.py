"""uebench: how unlearnable are unlearnable examples, really?

Public API (plain tensors in, plain tensors out):
    uebench.data.load(name, root, split)        -> ImageDataset
    uebench.models.create_model(name, ...)      -> nn.Module
    uebench.train.train(config, ...)            -> RunResult
    uebench.poison.Poison.load(path)            -> Poison
"""

__version__ = "0.1.0"
