"""`uebench defenses`: the training-time defenses, their kind, published defaults and where those come from."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("defenses", help="list the training-time defenses (for train --defense) with their defaults")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..defenses import DEFENSES, create_defense

    rows = [
        create_defense(name).describe() | {"description": DEFENSES.get(name).description} for name in DEFENSES.names()
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        params = " ".join(f"{k}={json.dumps(v)}" for k, v in r["params"].items())
        print(f"{r['name']:{width}s}  [{r['kind']}] {r['description']}")
        print(f"{'':{width}s}  defaults: {params}")
        print(f"{'':{width}s}  source: {r['source']}")
    print("use: uebench train --defense NAME [--defense-option key=value ...]")
    return 0
