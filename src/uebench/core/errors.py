"""The one exception type the CLI turns into a single line and exit status 2."""


class UserError(Exception):
    """Bad input from the user: unknown names, missing data, mismatched files, unsafe output folders."""


def unknown_name(kind: str, name: str, valid) -> UserError:
    return UserError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}")
