"""Derives the option table of ``facts.py`` from NVIDIA's trtexec source at each tag (a developer tool;
the tests never need the mirror).

The options a trtexec release accepts are the exact string literals ``"--name"`` read by the
``*Options::parse(Arguments&)`` functions (and ``parseHelp``) of ``samples/common/sampleOptions.cpp``:
``getAndDelOption(arguments, "--name", ...)``, ``getShapesBuild(arguments, ..., "--minShapes", ...)``
and the like.  Help text and warnings never hold such a literal (help lines start with spaces,
warnings go on after the name).  ``SafeBuilderOptions::parse`` belongs to another tool (trtSafeExec's
options) and is left out.  ``main`` of ``samples/trtexec/trtexec.cpp`` reports every argument that
no parse function consumed as ``Unknown option: NAME VALUE`` and fails.

    python tests/fakes/trtexec/derive.py [MIRROR]      # prints the OPTIONS dict of facts.py
"""

import os
import re
import subprocess
import sys

MIRROR = "/work/.mirror/NVIDIA+TensorRT/repo"
# version -> the tag of NVIDIA/TensorRT whose samples/ it was built from
TAGS = {"8.2.1": "8.2.1", "8.4.3": "8.4.3", "8.5.2": "8.5.2", "8.6.1": "v8.6.1", "10.3.0": "v10.3.0",
        "10.16.0": "v10.16", "11.0.0": "v11.0"}


def source(mirror: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", mirror, "show", "{}:{}".format(tag, path)], stdout=subprocess.PIPE,
                          check=True, text=True).stdout


def accepted_options(text: str) -> list:
    start = re.search(r"^void \w+::parse\(Arguments", text, re.M).start()
    end = text.find("std::ostream& operator<<", start)
    body = text[start:end]
    safe = re.search(r"^void SafeBuilderOptions::parse\(Arguments.*?^}", body, re.M | re.S)
    if safe:
        body = body[:safe.start()] + body[safe.end():]
    return sorted(set(re.findall(r'"(--[A-Za-z][A-Za-z0-9]*)"', body)) | ({"-h"} if '"-h"' in body else set()))


def derive(mirror: str = MIRROR) -> dict:
    return {version: accepted_options(source(mirror, tag, "samples/common/sampleOptions.cpp"))
            for version, tag in TAGS.items()}


if __name__ == "__main__":
    found = derive(sys.argv[1] if len(sys.argv) > 1 else MIRROR)
    print("OPTIONS = {")
    for version, names in found.items():
        print("    {!r}: frozenset({!r}),".format(version, names))
    print("}")
    sys.exit(0 if os.path.isdir(sys.argv[1] if len(sys.argv) > 1 else MIRROR) else 1)
