"""Fixtures that several test files share."""

import os
import subprocess

import pytest


@pytest.fixture
def small_disk(tmp_path, request):
    """A 4 MB tmpfs to fill (mounting needs root, as CI runs; skipped elsewhere).  Parametrized indirectly,
    the parameter is its mount options instead (``size=4m,nr_inodes=4``: a disk without room for another name)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    options = getattr(request, "param", "size=4m")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here ({}); CI runs as root".format(proc.stderr.strip()))
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def fill_disk():
    """``fill_disk(path, leave_kb=0)``: a file at ``path`` that takes all but ``leave_kb`` KB of its disk."""

    def fill(path, leave_kb=0):
        stats = os.statvfs(str(path.parent))
        keep = stats.f_bavail * stats.f_frsize - leave_kb * 1024
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            block = b"\0" * (1 << 16)
            while keep > 0:
                try:
                    keep -= os.write(fd, block[:keep])
                except OSError:
                    break  # full
        finally:
            os.close(fd)
        return path

    return fill
