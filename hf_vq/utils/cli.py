"""How every script in `training/` and `scripts/` ends: a user's mistake as one line, anything else as a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .errors import UsageError

USAGE_ERROR_STATUS = 2  # argparse's status for usage errors


def run_script(main: Callable[[], Any]) -> None:
    """Call `main()` and exit: status 0, or, for a `UsageError`, `error: <message>` on stderr and status 2 (as
    argparse). Anything else propagates with its full traceback (status 1): a bug or a failure of the machine or
    the network is not a usage error. An int returned by `main` is the exit status."""
    try:
        status = main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USAGE_ERROR_STATUS)
    sys.exit(status if isinstance(status, int) else 0)
