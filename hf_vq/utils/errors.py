"""The one error class for a user's mistakes."""

from __future__ import annotations


class UsageError(ValueError):
    """A mistake in what the user asked for: a config field, a flag, a path, a dataset column, an input shape.

    The message names the field, flag, file or record and the way on, in one line. The scripts print it as
    `error: <message>` and exit with status 2, without a traceback; anything else (a bug, a network failure) keeps
    its traceback. A `ValueError`, so that code catching `ValueError` keeps working.
    """
