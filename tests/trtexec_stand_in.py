"""Installs the stand-in trtexec of ``tests/fakes/trtexec`` as an executable ``trtexec`` for one release,
and reads back the invocations it logged (see ``tests/fakes/trtexec/trtexec.py``)."""

import json
import os
import stat
import sys
from typing import List

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes", "trtexec", "trtexec.py")
sys.path.insert(0, os.path.dirname(FAKE))
import facts  # noqa: E402

VERSIONS = tuple(facts.TAGS)


def install(directory: str, version: str, log: str) -> str:
    """``directory/trtexec``: a shell wrapper running the stand-in as trtexec ``version``, logging to ``log``."""
    if version not in facts.TAGS:
        raise ValueError("no stand-in for trtexec {}".format(version))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "trtexec")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\nFAKE_TRTEXEC_VERSION={} FAKE_TRTEXEC_LOG="{}" exec "{}" "{}" "$@"\n'.format(
            version, log, sys.executable, FAKE))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def invocations(log: str) -> List[List[str]]:
    """The argv (without the program) of every run, oldest first."""
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        return [json.loads(line)["argv"] for line in handle]
