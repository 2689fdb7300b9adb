"""User-facing errors.  The command-line tools turn these into one line on stderr and exit code 2."""


class UserError(ValueError):
    """Bad input: the message names the file, field or value and says how to fix it."""
