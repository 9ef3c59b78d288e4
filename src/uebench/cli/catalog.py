"""`uebench models` and `uebench recipes`: what --model and --recipe accept (parameter counts at width 1 and 0.125)."""

from __future__ import annotations

import json


def register(sub) -> None:
    m = sub.add_parser("models", help="list the models (for --model), with their parameter counts")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=models_cmd)
    r = sub.add_parser("recipes", help="list the training recipes (for --recipe)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=recipes_cmd)


def models_cmd(args) -> int:
    from ..models import MODELS, create_model

    rows = []
    for name in MODELS.names():
        counts = {}
        for width in (1.0, 0.125):
            model = create_model(name, num_classes=10, in_channels=3, image_size=32, width=width)
            counts[str(width)] = sum(p.numel() for p in model.parameters())
        rows.append({"name": name, "parameters": counts})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':12s} {'params, width 1':>16s} {'width 0.125':>12s}   (CIFAR-sized: 3x32x32, 10 classes)")
    for r in rows:
        print(f"{r['name']:12s} {r['parameters']['1.0']:16,d} {r['parameters']['0.125']:12,d}")
    return 0


def recipes_cmd(args) -> int:
    from ..training.recipes import RECIPES

    rows = [RECIPES.get(name).to_dict() for name in RECIPES.names()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        opt = "Adam" if r.get("optimizer") == "adam" else f"SGD momentum {r['momentum']:g}"
        print(
            f"{r['name']:11s} {r['epochs']:3d} epochs, batch {r['batch_size']}, {opt}, lr {r['lr']:g} {r['schedule']}, "
            f"weight decay {r['weight_decay']:g}, augment {r['augment']}"
        )
        if r.get("description"):
            print(f"{'':11s} {r['description']}")
    return 0
