"""Exceptions that the command line turns into exit codes (docs/design.md §Exit codes).

UsageError -> exit 2 with a one-line message (bad flag, unreadable file, unknown name).
CheckFailed -> exit 1 (a failed check or certificate).
"""


class UsageError(Exception):
    """The user's input is wrong: report it in one line and exit 2, never a traceback."""


class CheckFailed(Exception):
    """A check or certificate failed: exit 1."""


class UndecidedRounding(ArithmeticError):
    """The correctly rounded value could not be decided within the precision cap.

    Raised by the reference instead of looping forever (Ziv's strategy with a cap).
    """
