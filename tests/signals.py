"""Start a command as a terminal would, whatever started the test run."""

import signal


def like_a_terminal() -> None:
    """``preexec_fn`` for a child that a test sends SIGINT: a shell starts background jobs (``cmd &``,
    nohup, some CI runners) with SIGINT ignored, and Python then installs no Ctrl-C handler, so the
    child gets the default disposition back, as a command typed at a terminal has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
