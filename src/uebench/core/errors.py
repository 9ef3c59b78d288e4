"""The one exception type the CLI turns into a single line and exit status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: unknown names, missing data, mismatched files, unsafe output folders."""


def did_you_mean(name: object, valid: Iterable[object]) -> str:
    """The hint "; did you mean 'x'?" for the valid name closest to a misspelt `name` (case aside); "" when none is
    close."""
    typed = str(name).lower()
    lowered = {str(v).lower(): str(v) for v in valid}
    close = difflib.get_close_matches(typed, list(lowered), n=3, cutoff=0.6)
    # among the closest, two swapped letters ('lps' for 'lsp') before another letter ('ops')
    swapped = [c for c in close if sorted(c) == sorted(typed)]
    best = (swapped or close)[:1]
    return f"; did you mean '{lowered[best[0]]}'?" if best else ""


def unknown_name(kind: str, name: str, valid: Iterable[object]) -> UserError:
    """'unknown attack 'lps'; did you mean 'lsp'? valid: ...' (the suggestion only where one name is close)."""
    names = sorted(str(v) for v in valid)
    hint = did_you_mean(name, names)
    return UserError(f"unknown {kind} '{name}'{hint or ';'} valid: {', '.join(names)}")
