"""A repeatable background load for the benchmarks' "under noise" runs: Debian's stress-ng."""

import os
import shutil
import signal
import subprocess


class Stress:
    """``stress-ng --cpu N`` in its own process group, stopped (with its workers) on close."""

    def __init__(self, workers: int) -> None:
        if shutil.which("stress-ng") is None:
            raise SystemExit("--stress needs stress-ng (Debian: apt-get install stress-ng)")
        self.workers = workers
        self.process = subprocess.Popen(["stress-ng", "--cpu", str(workers), "--quiet"], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def describe(self) -> str:
        return "stress-ng --cpu {}".format(self.workers)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait()

    def __enter__(self) -> "Stress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
