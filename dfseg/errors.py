"""User-facing errors.  The command-line tools turn these into one line on stderr and exit code 2."""


class UserError(ValueError):
    """Bad input: the message names the file, field or value and says how to fix it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, systemd, ``kill``): handled as Ctrl-C is, so every output is finalised."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise ``Terminated`` where the main thread is."""
    raise Terminated()
