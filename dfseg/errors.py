"""User-facing errors.  The command-line tools turn these into one line on stderr and exit code 2."""

import numbers


class UserError(ValueError):
    """Bad input: the message names the file, field or value and says how to fix it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, systemd, ``kill``): handled as Ctrl-C is, so every output is finalised."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise ``Terminated`` where the main thread is."""
    raise Terminated()


def check_whole_number(name: str, value: object, minimum: int) -> int:
    """``value`` as an int when it is a whole number >= ``minimum`` (a Python or numpy integer, not a
    bool or a string), else a UserError naming ``name``: the API's counterpart of the commands'
    ``whole_number`` option type, with the same bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError("{}: expected a whole number >= {}, got {!r}".format(name, minimum, value))
    return int(value)
