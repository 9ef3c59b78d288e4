"""Was the poison learned at all? And did the clean baseline learn anything? One rule each, read before any SAL.

UD compares how many layers a poisoned run keeps "learnable" with the clean run. A poison the model ignored leaves
a model that learned the content like the clean one, so its UD says nothing about protection; a clean run at chance
gives a threshold beta that separates nothing. Both are decided here, from the run's own probes, and every table,
figure and page that shows a UD shows the verdict beside it.

The poison verdict reads the shortcut probe (uebench.training.shortcut) on the poisoned training images:
`shortcut` = accuracy of the perturbations moved onto other-class images, scored by the perturbation's label (a
model that ignores the perturbation scores near 0, one that guesses scores chance 1/C); `clean_train` = accuracy on
the clean originals of the same images. `reference` is the clean run's final test accuracy (same data, model and
defense): how well a model learns this content from clean data, on images it never saw. With p = 1/C, a margin of 3
binomial standard errors at p over the n probed images, m = 3 sqrt(p (1 - p) / n), and m_r the same at the reference:

    yes      shortcut >= 1/2 and shortcut >= clean_train     the perturbation decides most predictions, or
             clean_train <= reference / 2                     the content of its own images learned at most half as
                                                              well as from clean data (TAP's way: no transplantable
                                                              shortcut, yet the content is not learned)
    partly   shortcut > p + m, or clean_train < reference - m_r   it moves predictions, or holds the content back
    no       clean_train > p + m                              the content is learned as from clean data, the
                                                              perturbation ignored
    unknown  otherwise, or no shortcut probe                  the model learned neither (or the poison has no originals)

Without a reference only the shortcut separates yes and partly from no. Accuracies are in percent, as run records
hold them.

The clean baseline has learned when its final test accuracy exceeds chance by the same kind of margin over the test
set: acc > p + 3 sqrt(p (1 - p) / n_test).
"""

from __future__ import annotations

import math

RULE = (
    "learned: yes = shortcut >= 50% and >= clean-train accuracy, or clean-train at most half the clean run's test "
    "accuracy; partly = shortcut above chance by 3 standard errors, or clean-train below the clean run's test "
    "accuracy by 3 standard errors; no = clean-train accuracy as from clean data and the shortcut at chance; "
    "unknown = neither, or no shortcut probe"
)
DEFAULT_PROBE_SIZE = 512  # the shortcut probe's size (metrics.shortcut.shortcut_probes) where a record lacks it
RANKED = ("yes", "partly")  # verdicts whose UD is shown as a result; "partly" marked as such


def chance_margin(num_classes: int, n: int, sigmas: float = 3.0) -> float:
    """sigmas binomial standard errors of an accuracy at chance (1/num_classes) over n samples."""
    p = 1.0 / max(num_classes, 1)
    return sigmas * math.sqrt(p * (1 - p) / max(n, 1))


def above_chance(acc: float | None, num_classes: int, n: int) -> bool:
    """Is an accuracy (percent) more than 3 standard errors above chance?"""
    if acc is None or not math.isfinite(acc):
        return False
    return acc / 100 > 1.0 / max(num_classes, 1) + chance_margin(num_classes, n)


def poison_learned(
    shortcut: float | None,
    clean_train: float | None,
    num_classes: int,
    n: int | None = None,
    reference: float | None = None,
) -> str:
    """The verdict of one poisoned run (accuracies in percent; `reference`: the clean run's final test accuracy);
    see the module docstring."""
    if shortcut is None or not math.isfinite(shortcut) or num_classes < 2:
        return "unknown"
    n = n or DEFAULT_PROBE_SIZE
    content = clean_train is not None and math.isfinite(clean_train)
    # a clean run at chance says nothing about how well the content can be learned
    ref = reference if above_chance(reference, num_classes, n) else None
    if shortcut >= 50 and (not content or shortcut >= clean_train):
        return "yes"
    if content and ref is not None and ref / 2 > 100 / num_classes and clean_train <= ref / 2:
        return "yes"
    if above_chance(shortcut, num_classes, n):
        return "partly"
    if content and ref is not None:
        r = min(max(ref / 100, 1e-6), 1 - 1e-6)
        if clean_train < ref - 300 * math.sqrt(r * (1 - r) / n):
            return "partly"
    if content and above_chance(clean_train, num_classes, n):
        return "no"
    return "unknown"


def baseline_learned(test_acc: float | None, num_classes: int, n_test: int) -> bool:
    """Has the clean run learned the task (final test accuracy clearly above chance)?"""
    return num_classes >= 2 and above_chance(test_acc, num_classes, n_test)


def baseline_reason(test_acc: float | None, num_classes: int, n_test: int) -> str:
    """The one line that says why a clean run does not serve as a baseline."""
    floor = 1.0 / num_classes + chance_margin(num_classes, n_test)
    got = "no accuracy" if test_acc is None else f"{test_acc:.1f}%"
    return (
        f"the clean run's final test accuracy ({got}) is not clearly above chance ({100 / num_classes:.1f}% + 3 "
        f"standard errors over {n_test} test images = {100 * floor:.1f}%): it learned nothing to compare with, so "
        "beta, #LP and UD are not computed"
    )
