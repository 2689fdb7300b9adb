"""Where trials run: in this process, in a local process pool, or as Ray tasks.

Every executor offers ``capacity`` (trials it can hold), ``submit(trial)``, ``running()`` (the
numbers of the trials in it), ``wait(timeout_s)`` (the finished ``Outcome``s, at least one unless
``timeout_s`` passed first, so that the search can read running trials' progress in between),
``stop(number)`` (end a running trial early; its outcome, if one still comes, is not used) and
``close()``.  Failures never escape: a full disk comes back as an ``Outcome`` marked ``disk_full``
(never retried), an evaluator error is retried ``retries`` times inside the worker, a dead worker
(killed process, crashed Ray worker) is resubmitted up to ``retries`` times, and what still fails
comes back as an ``Outcome`` with an error for the study to record.
"""

import multiprocessing
import multiprocessing.connection
import os
import queue
import re
import signal
import socket
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from ..errors import UserError, raise_terminated
from ..fileio import DiskFullError
from ..uri import redact
from .evaluators import EvaluationError, TrialStopped
from .progress import clear_stop, read_progress, request_stop

Evaluator = Callable[[Any, str], float]


class Outcome(NamedTuple):
    number: int
    accuracy: Optional[float]
    error: Optional[str]
    attempts: int
    seconds: float
    progress: Sequence[Dict[str, Any]] = ()  # the trial's per-epoch records (evaluators.PROGRESS_NAME)
    # The trial ran out of disk space: that is no result of the trial, so the search stops with ``error``
    # and the trial runs again on --resume instead of being recorded as failed.
    disk_full: bool = False


def trial_dir(root: str, number: int) -> str:
    return os.path.join(root, "trials", "{:05d}".format(number))


def evaluate_trial(evaluator: Evaluator, trial: Any, directory: str, retries: int) -> Outcome:
    """Run one trial with retries; never raises (runs inside workers)."""
    start = time.time()
    error = "not run"
    for attempt in range(1, retries + 2):
        try:
            accuracy = float(evaluator(trial, directory))
            return Outcome(trial.number, accuracy, None, attempt, time.time() - start, read_progress(directory))
        except TrialStopped as exc:  # asked for by the search: not a failure to retry
            return Outcome(trial.number, None, str(exc), attempt, time.time() - start)
        except EvaluationError as exc:
            error = str(exc)
        except DiskFullError as exc:  # no retry: a full disk stays full
            return Outcome(trial.number, None, str(exc), attempt, time.time() - start, disk_full=True)
        except Exception as exc:  # a buggy evaluator must not end the search: record it
            error = "{}: {} ({})".format(type(exc).__name__, exc, traceback.format_exc(limit=3).strip().splitlines()[-1])
    return Outcome(trial.number, None, error, retries + 1, time.time() - start)


def start_trial(root: str, trial: Any) -> str:
    """The trial's directory, without a stop request left by an earlier run (``--resume``)."""
    directory = trial_dir(root, trial.number)
    clear_stop(directory)
    return directory


class SequentialExecutor:
    """One trial at a time, in this process (in a thread, so that the search reads its progress
    and can stop it while it trains)."""

    capacity = 1

    def __init__(self, evaluator: Evaluator, root: str, retries: int = 0) -> None:
        self.evaluator, self.root, self.retries = evaluator, root, retries
        self._thread = None  # type: Optional[threading.Thread]
        self._number = None  # type: Optional[int]
        self._done = queue.Queue()  # type: queue.Queue[Outcome]

    @property
    def pending(self) -> int:
        return int(self._thread is not None)

    def running(self) -> List[int]:
        return [] if self._number is None else [self._number]

    def submit(self, trial: Any) -> None:
        directory = start_trial(self.root, trial)

        def work() -> None:
            self._done.put(evaluate_trial(self.evaluator, trial, directory, self.retries))

        self._number = trial.number
        self._thread = threading.Thread(target=work, name="dfseg-trial-{}".format(trial.number), daemon=True)
        self._thread.start()

    def wait(self, timeout_s: Optional[float] = None) -> List[Outcome]:
        if self._thread is None:
            return []
        try:
            outcome = self._done.get(timeout=timeout_s)
        except queue.Empty:
            return []
        self._thread.join()
        self._thread = self._number = None
        return [outcome]

    def stop(self, number: int) -> None:
        if number != self._number or self._thread is None:
            return
        request_stop(trial_dir(self.root, number))
        self._thread.join()  # the evaluator ends at its next check (see progress.STOP_NAME)
        self._thread = self._number = None
        while not self._done.empty():
            self._done.get()  # its outcome, if one came, is not used

    def close(self) -> None:
        if self._number is not None:
            self.stop(self._number)


def _child(connection: Any, evaluator: Evaluator, trial: Any, directory: str, retries: int) -> None:
    # The search ends a worker with SIGTERM (its own SIGTERM, Ctrl-C or a stop): the evaluator's
    # cleanup (a training command's process group) must run, and the worker then exits quietly.
    signal.signal(signal.SIGTERM, raise_terminated)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal group; the parent decides
    try:
        connection.send(evaluate_trial(evaluator, trial, directory, retries))
        connection.close()
    except KeyboardInterrupt:
        os._exit(128 + signal.SIGTERM)


class ProcessPoolExecutor:
    """Up to ``workers`` trials at once, each in its own local process.

    One process per trial (forked from a clean fork server, so threads and torch in this process
    do not leak into it) means a worker that dies is attributed to exactly its own trial, which is
    resubmitted up to ``retries`` times and then recorded as failed.
    """

    def __init__(self, evaluator: Evaluator, root: str, workers: int, retries: int = 0) -> None:
        if workers < 1:
            raise UserError("--workers: must be at least 1, got {}".format(workers))
        self.evaluator, self.root, self.retries = evaluator, root, retries
        self.capacity = workers
        self._context = multiprocessing.get_context("forkserver")
        self._running = {}  # type: Dict[int, Any]
        self._deaths = {}  # type: Dict[int, int]

    @property
    def pending(self) -> int:
        return len(self._running)

    def running(self) -> List[int]:
        return list(self._running)

    def submit(self, trial: Any) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_child, daemon=True, args=(
            sender, self.evaluator, trial, start_trial(self.root, trial), self.retries))
        process.start()
        sender.close()
        self._running[trial.number] = (process, receiver, trial)

    def stop(self, number: int) -> None:
        """SIGTERM to the trial's worker: its evaluator's cleanup ends a training command's group."""
        entry = self._running.pop(number, None)
        if entry is not None:
            process, receiver, _ = entry
            process.terminate()
            process.join()
            receiver.close()

    def wait(self, timeout_s: Optional[float] = None) -> List[Outcome]:
        handles = [entry[0].sentinel for entry in self._running.values()] + [e[1] for e in self._running.values()]
        multiprocessing.connection.wait(handles, timeout_s)
        outcomes = []  # type: List[Outcome]
        for number, (process, receiver, trial) in list(self._running.items()):
            outcome = None
            try:
                if receiver.poll():
                    outcome = receiver.recv()
            except (EOFError, OSError):
                outcome = None
            if outcome is None and process.is_alive():
                continue
            process.join()
            receiver.close()
            del self._running[number]
            if outcome is not None:
                outcomes.append(outcome)
                continue
            deaths = self._deaths.get(number, 0) + 1
            self._deaths[number] = deaths
            if deaths > self.retries:
                outcomes.append(Outcome(number, None, "worker process died {} time(s) (exit code {})".format(
                    deaths, process.exitcode), deaths, 0.0))
            else:
                self.submit(trial)
        return outcomes

    def close(self) -> None:
        for process, receiver, _ in self._running.values():
            process.terminate()
            process.join()
            receiver.close()
        self._running.clear()


class RayExecutor:
    """One Ray task per trial with its own CPU/GPU request (``--ray-address``)."""

    def __init__(self, evaluator: Evaluator, root: str, address: Optional[str] = None, workers: int = 2,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, retries: int = 0,
                 init_kwargs: Optional[Dict[str, Any]] = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--ray-address needs ray: pip install 'ray[default]'") from None
        self._ray = ray
        if not ray.is_initialized():
            check_ray_address(address)
            kwargs = dict(init_kwargs or {})
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(
                    "--ray-address {}: cannot connect to Ray ({}); check that the cluster is up (`ray status`), and "
                    "for a cluster with token authentication set RAY_AUTH_MODE=token and its token "
                    "(RAY_AUTH_TOKEN or ~/.ray/auth_token)".format(address, exc)) from None
        self.root, self.retries, self.capacity = root, retries, workers
        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
        if gpus_per_trial > cluster_gpus:
            raise UserError("--gpus-per-trial {:g}: the Ray cluster has {:g} GPU(s), so no trial could start; give at "
                            "most {:g} or add GPU nodes".format(gpus_per_trial, cluster_gpus, cluster_gpus))
        # A trial's task holds all its GPUs; the built-in trainer runs its N data-parallel processes inside it
        # (Ray sets CUDA_VISIBLE_DEVICES to the task's GPUs, and rank r takes the r-th).
        self._task = ray.remote(evaluate_trial).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                                                         max_retries=retries)
        self._evaluator = ray.put(evaluator)
        self._refs = {}  # type: Dict[Any, Any]

    @property
    def pending(self) -> int:
        return len(self._refs)

    def running(self) -> List[int]:
        return [trial.number for trial in self._refs.values()]

    def submit(self, trial: Any) -> None:
        ref = self._task.remote(self._evaluator, trial, start_trial(self.root, trial), self.retries)
        self._refs[ref] = trial

    def stop(self, number: int) -> None:
        """Cancel the trial's task (a KeyboardInterrupt inside it, so its evaluator ends a training
        command's process group); the stop file also reaches it where the filesystem is shared."""
        for ref, trial in list(self._refs.items()):
            if trial.number == number:
                request_stop(trial_dir(self.root, number))
                self._ray.cancel(ref, force=False)
                del self._refs[ref]

    def wait(self, timeout_s: Optional[float] = None) -> List[Outcome]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout_s)
        outcomes = []
        for ref in ready:
            trial = self._refs.pop(ref)
            try:
                outcomes.append(self._ray.get(ref))
            except self._ray.exceptions.RayError as exc:  # worker crash after Ray's own retries
                outcomes.append(Outcome(trial.number, None, "ray: {}".format(_ray_reason(exc)), self.retries + 1,
                                        0.0))
        return outcomes

    def close(self, grace_s: float = 10.0) -> None:
        """Cancel what is running: first as a KeyboardInterrupt inside each task, so a training
        command's process group is ended by its evaluator, then by force for what is left."""
        refs = list(self._refs)
        for ref in refs:
            self._ray.cancel(ref, force=False)
        if refs:
            _, left = self._ray.wait(refs, num_returns=len(refs), timeout=grace_s)
            for ref in left:
                self._ray.cancel(ref, force=True)
        self._refs.clear()


def check_ray_address(address: Optional[str], timeout_s: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address that accepts no connection is refused in seconds, not
    after Ray's own half-minute of retries."""
    if not address or address in ("auto", "local"):
        return
    match = re.match(r"^(?:ray://)?(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+):(\d+)/?$", address)
    if not match:
        raise UserError("--ray-address {}: expected auto, local, HOST:PORT or ray://HOST:PORT".format(redact(address)))
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError("--ray-address {}: nothing answers at {}:{} ({}); check that the cluster is up "
                        "(`ray status` on its head node) and the address".format(
                            redact(address), host, port, exc.strerror or exc)) from None


def _ray_reason(exc: BaseException) -> str:
    """One line saying why a Ray task failed: the exception type and the message's last line (Ray's
    messages start with the task's name and end with the cause), without terminal colours."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line and set(line) != {"^"}]
    return "{}: {}".format(type(exc).__name__, lines[-1]) if lines else type(exc).__name__


def make_executor(evaluator: Evaluator, root: str, workers: int = 1, ray_address: Optional[str] = None,
                  cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, retries: int = 0) -> Any:
    if workers < 1:
        raise UserError("--workers: must be at least 1, got {}".format(workers))
    if retries < 0:
        raise UserError("--retries: must be >= 0, got {}".format(retries))
    if ray_address is not None:
        return RayExecutor(evaluator, root, ray_address if ray_address != "local" else None, workers,
                           cpus_per_trial, gpus_per_trial, retries)
    if workers <= 1:
        return SequentialExecutor(evaluator, root, retries)
    return ProcessPoolExecutor(evaluator, root, workers, retries)
