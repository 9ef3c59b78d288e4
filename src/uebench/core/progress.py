"""The one progress display of every long loop (training, crafting, SAL, reading files), on stderr, or nothing.

Interactive (stderr is a terminal, or a notebook): tqdm bars. Otherwise (a cluster job's log, a pipe) one plain line,
without carriage returns, at most every UEBENCH_PROGRESS_EVERY seconds (default 10) per bar, and one at its end:

    train resnet18 on cifar10: epoch 3/10, step 120/400 (30%), 12.1 step/s, loss 1.234, test 41.2%, elapsed 0:10,
    left ~0:23

UEBENCH_PROGRESS=plain (or =bar) picks the form whatever stderr is. A caller that is asked to be quiet passes
`enabled=False` and gets None: nothing is shown. `Tally` counts the items of a long list (a bench's runs) in lines.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable

from .errors import UserError

MODE_ENV = "UEBENCH_PROGRESS"  # auto (default) | bar | plain
EVERY_ENV = "UEBENCH_PROGRESS_EVERY"  # seconds between two plain lines of one bar
DEFAULT_EVERY = 10.0
MODES = ("auto", "bar", "plain")


def plain_output() -> bool:
    """Whether progress is written as plain lines: UEBENCH_PROGRESS says so, or stderr is no terminal (and no
    notebook, whose tqdm widget needs none)."""
    mode = os.environ.get(MODE_ENV, "").strip().lower() or "auto"
    if mode not in MODES:
        raise UserError(f"{MODE_ENV} is {', '.join(MODES)}, got '{os.environ[MODE_ENV]}'")
    if mode != "auto":
        return mode == "plain"
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget there
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return not (isatty is not None and isatty())


def plain_every() -> float:
    """The seconds between two plain lines of one bar (UEBENCH_PROGRESS_EVERY, default 10)."""
    text = os.environ.get(EVERY_ENV, "").strip()
    if not text:
        return DEFAULT_EVERY
    try:
        every = float(text)
    except ValueError:
        every = math.nan
    if not (math.isfinite(every) and every >= 0):
        raise UserError(f"{EVERY_ENV} is a number of seconds >= 0, got '{text}'")
    return every


def clock_time(seconds: float) -> str:
    """0:07, 12:30, 1:02:03."""
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_bar(
    enabled: bool, total: int | None, desc: str, *, unit: str = "step", initial: int = 0, leave: bool = True
) -> Progress | None:
    """A bar of `total` units, or None when `enabled` is false (callers write `if bar: bar.update()`)."""
    if not enabled:
        return None
    if plain_output():
        return Progress(total, desc, unit=unit, initial=initial, every=plain_every())
    return Progress(total, desc, unit=unit, initial=initial, leave=leave, tqdm=True)


class Progress:
    """One bar: `update(n)` counts units done; `set_stage("epoch 3/10")` says which part of the loop runs;
    `set_item(i, "layer2.0.conv2")` says that i units are done and which one runs now; `set_postfix(loss=...)` adds
    the latest figures. Drawn by tqdm (`tqdm=True`) or written as plain lines to `stream` (default stderr), at most one
    every `every` seconds of `clock`, and one on close."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "step",
        initial: int = 0,
        leave: bool = True,
        tqdm: bool = False,
        every: float = DEFAULT_EVERY,
        clock: Callable[[], float] = time.monotonic,
        stream: Any = None,
    ):
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.stage: str | None = None
        self.item: str | None = None
        self.postfix: dict[str, Any] = {}
        self.every, self.clock, self.stream = every, clock, stream
        self.start = self.last = clock()
        self.closed = False
        self.unwritten = True  # a change since the last plain line (the end writes one unless it was just written)
        self._tqdm = None
        if tqdm:
            from tqdm.auto import tqdm as bar  # imported only when a bar is drawn: tqdm is slow to import

            self._tqdm = bar(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave)

    # ---- what the loop reports
    def update(self, n: int = 1) -> None:
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        else:
            self._maybe_write()

    def set_postfix(self, **figures: Any) -> None:
        self.postfix = figures
        self._changed()

    def set_stage(self, stage: str | None) -> None:
        self.stage = stage
        if self._tqdm is not None:
            self._tqdm.set_description_str(self.desc if stage is None else f"{self.desc}, {stage}", refresh=False)
        self._changed()

    def set_item(self, done: int, item: str | None) -> None:
        """`done` units finished, `item` the one under way (None: between items)."""
        self.item, step, self.n = item, done - self.n, done
        if self._tqdm is None:
            self._maybe_write()
            return
        self._changed(refresh=step == 0)
        if step:
            self._tqdm.update(step)  # draws the count and the item together

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.unwritten or self.item is not None:
            self.item = None
            self._write()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- the two forms
    def _changed(self, refresh: bool = True) -> None:
        if self._tqdm is None:
            self._maybe_write()
            return
        text = ", ".join(
            [*([self.item] if self.item is not None else []), *(f"{k}={v}" for k, v in self.postfix.items())]
        )
        self._tqdm.set_postfix_str(text, refresh=refresh)

    def _maybe_write(self) -> None:
        self.unwritten = True
        if self.clock() - self.last >= self.every:
            self._write()

    def _write(self) -> None:
        self.last, self.unwritten = self.clock(), False
        stream = self.stream if self.stream is not None else sys.stderr
        print(self.line(), file=stream, flush=True)

    def line(self) -> str:
        """The plain line: what runs, how far, how fast, the latest figures, the time spent and left."""
        elapsed = self.clock() - self.start
        parts = [self.stage] if self.stage else []
        if self.item is not None:  # the unit under way: "layer 7/21 (layer2.0.conv2)"
            of = f"/{self.total}" if self.total is not None else ""
            parts.append(f"{self.unit} {self.n + 1}{of} ({self.item})")
        elif self.total:
            parts.append(f"{self.unit} {self.n}/{self.total} ({100 * self.n / self.total:.0f}%)")
        else:
            parts.append(f"{self.unit} {self.n}")
        done = self.n - self.initial
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{_figure(rate)} {self.unit}/s" if rate >= 1 else f"{_figure(1 / rate)} s/{self.unit}")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        parts.append(f"elapsed {clock_time(elapsed)}")
        if not self.closed and done > 0 and self.total is not None and self.n < self.total:
            parts.append(f"left ~{clock_time(elapsed / done * (self.total - self.n))}")
        return f"{self.desc}: {', '.join(parts)}"


def _figure(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


class Tally:
    """Lines counting the items of a long list as each starts, for a log as much as a terminal:

        run 3 of 10: ops / none / seed 0 (elapsed 4:10, left ~12:30 at 2:05 a run)
        run 4 of 10 cached: ops / gray / seed 0

    What is left is estimated from the items finished (`done()`) in this process: their mean time, times the items
    still to compute. Nothing is written when `enabled` is false."""

    def __init__(
        self,
        what: str,
        total: int,
        enabled: bool = True,
        *,
        clock: Callable[[], float] = time.monotonic,
        stream: Any = None,
        start: float | None = None,
    ):
        self.what, self.total, self.enabled = what, total, enabled
        self.clock, self.stream = clock, stream
        self.start = clock() if start is None else start
        self.k = 0
        self.durations: list[float] = []
        self._began: float | None = None

    def cached(self, label: str) -> None:
        """The next item, already computed: counted as done at once."""
        self.k += 1
        self._began = None
        self._say(f"{self.what} {self.k} of {self.total} cached: {label}")

    def begin(self, label: str, *, left: int | None = None, estimate: bool = True) -> None:
        """The next item starts; `left`: the items still to compute, this one included (default: all after it)."""
        self.k += 1
        self._began = self.clock()
        text = f"{self.what} {self.k} of {self.total}: {label} (elapsed {clock_time(self._began - self.start)}"
        if estimate:
            text += ", " + self.estimate(self.total - self.k + 1 if left is None else left)
        self._say(text + ")")

    def done(self) -> None:
        """The item begun last finished: its time counts in the estimate."""
        if self._began is not None:
            self.durations.append(self.clock() - self._began)
            self._began = None

    def estimate(self, left: int) -> str:
        if not self.durations:
            return "estimate after the first " + self.what
        each = sum(self.durations) / len(self.durations)
        return f"left ~{clock_time(each * left)} at {clock_time(each)} a {self.what}"

    def note(self, text: str) -> None:
        self._say(text)

    def _say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream if self.stream is not None else sys.stderr, flush=True)
