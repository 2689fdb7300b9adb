"""Durable writes: a process killed mid-write leaves nothing that a later write does not clean up,
results get the user's usual file mode, and output paths are checked before any work."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from dfseg.errors import UserError
from dfseg.fileio import atomic_output, check_outputs, write_atomic

KILLED_WRITER = """
import os, signal, sys
from dfseg.fileio import atomic_output
with atomic_output(sys.argv[1]) as temp:
    open(temp, "wb").write(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_write_killed_midway_leaves_an_orphan_that_the_next_write_removes(tmp_path):
    target = tmp_path / "model.onnx"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)])
    assert proc.returncode == -signal.SIGKILL
    orphans = [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert len(orphans) == 1 and not target.exists()
    write_atomic(str(target), b"whole")
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"] and target.read_bytes() == b"whole"


def test_results_get_the_usual_mode_even_when_the_writer_replaces_the_file(tmp_path):
    previous = os.umask(0o022)
    try:
        target = tmp_path / "w.safetensors"
        with atomic_output(str(target)) as temp:
            os.unlink(temp)  # as a library that writes its own new file would
            with open(temp, "wb") as out:
                out.write(b"x")
            os.chmod(temp, 0o600)
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    finally:
        os.umask(previous)


def test_check_outputs_refuses_inputs_twins_and_unwritable_places(tmp_path):
    source = tmp_path / "in.mp4"
    source.write_bytes(b"video")
    link = tmp_path / "link.mp4"
    os.symlink(source, link)
    with pytest.raises(UserError, match="is the input"):
        check_outputs([("output", str(link))], inputs=[str(source)])
    os.link(source, tmp_path / "hard.mp4")
    with pytest.raises(UserError, match="is the input"):
        check_outputs([("output", str(tmp_path / "hard.mp4"))], inputs=[str(source)])
    with pytest.raises(UserError, match="named twice"):
        check_outputs([("--json", str(tmp_path / "a.json")), ("--csv", str(tmp_path / "." / "a.json"))])
    with pytest.raises(UserError, match="cannot write in /proc"):
        check_outputs([("--json", "/proc/x/y.json")])
    check_outputs([("--json", str(tmp_path / "new" / "deeper" / "r.json"))], inputs=[str(source)])
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert sorted(os.listdir(tmp_path)) == ["hard.mp4", "in.mp4", "link.mp4"]
