"""User-facing errors.  The command-line tools turn these into one line on stderr and exit code 2."""

import math
import numbers
from typing import Optional


class UserError(ValueError):
    """Bad input: the message names the file, field or value and says how to fix it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, systemd, ``kill``): handled as Ctrl-C is, so every output is finalised."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise ``Terminated`` where the main thread is."""
    raise Terminated()


def check_whole_number(name: str, value: object, minimum: int, maximum: Optional[int] = None) -> int:
    """``value`` as an int when it is a whole number >= ``minimum`` (and <= ``maximum`` where given; a
    Python or numpy integer, not a bool or a string), else a UserError naming ``name``: the API's
    counterpart of the commands' ``whole_number`` option type, with the same bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum or (
            maximum is not None and value > maximum):
        expected = ">= {}".format(minimum) if maximum is None else "from {} to {}".format(minimum, maximum)
        raise UserError("{}: expected a whole number {}, got {!r}".format(name, expected, value))
    return int(value)


def check_number(name: str, value: object, minimum: float, maximum: float, above: bool = False) -> float:
    """``value`` as a float when it is a finite real number from ``minimum`` (exclusive with ``above``)
    to ``maximum``, else a UserError naming ``name``: the API's counterpart of the commands' ``number``
    option type, with the same bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or \
            value < minimum or (above and value == minimum) or value > maximum:
        raise UserError("{}: expected a finite number {} {} and <= {}, got {!r}".format(
            name, ">" if above else ">=", minimum, maximum, value))
    return float(value)
