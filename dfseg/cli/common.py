"""What every dfseg command shares: one-line errors with exit code 2, and clean Ctrl-C.

Device side: Python 3.6, no torch.
"""

import sys
from typing import Callable, List, Optional

from ..errors import UserError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def run_command(prog: str, body: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run ``body(argv)``; bad input becomes ``PROG: error: MESSAGE`` on stderr and exit code 2."""
    try:
        return body(argv)
    except UserError as exc:
        print("{}: error: {}".format(prog, exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("{}: interrupted".format(prog), file=sys.stderr)
        return EXIT_INTERRUPTED
