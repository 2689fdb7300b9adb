"""Command-line entry points.  Each module has a ``main(argv=None) -> int``."""
