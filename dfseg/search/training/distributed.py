"""One trial as N data-parallel processes (``torch.distributed``): NCCL on GPUs, Gloo on CPUs, launched
with ``torch.multiprocessing`` (spawned, so no parent state leaks in).  Rank r trains on GPU r of the
devices the trial was given (with Ray: the GPUs Ray assigned to the trial's task).

The global batch is split evenly over the ranks and the loss of every rank is its share of the global
batch's mean, so that the gradients DistributedDataParallel averages are those of one process training
the whole batch.  BatchNorm statistics are synchronised over the ranks: ``torch.nn.SyncBatchNorm`` on
GPUs; on CPUs, where torch's SyncBatchNorm has no kernel, ``CpuSyncBatchNorm`` computes the same
statistics with all-reduces whose gradient is again an all-reduce.
"""

import os
import re
import socket
from typing import Any, Callable, NamedTuple, Optional, Tuple

from ...errors import UserError


class Group(NamedTuple):
    rank: int
    world: int
    device: str  # this rank's torch device


SINGLE = Group(0, 1, "cpu")


DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")  # what the trainer (and _rank_main's rank -> GPU) handles


def check_device(device: str, devices: int = 1) -> Optional[int]:
    """``--device`` as the built-in trainer takes it (cpu, cuda or cuda:N; any machine): its GPU number or
    None.  A trial of several processes puts rank r on GPU r, so there a GPU number is refused."""
    match = DEVICE.fullmatch(device)
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise UserError("--device {!r}: the built-in trainer runs on cpu, cuda or cuda:N (N a GPU number of this "
                        "machine)".format(device))
    index = None if match.group(2) is None else int(match.group(2))
    if index is not None and devices > 1:
        raise UserError("--device {}: a trial of {} processes trains on GPUs 0..{} (rank r on GPU r); give --device "
                        "cuda".format(device, devices, devices - 1))
    return index


def check_devices(devices: int, device: str) -> None:
    """Refuse ``--device`` and ``devices`` GPUs per trial that this machine cannot give (before the first
    trial)."""
    if devices < 1:
        raise UserError("--devices-per-trial: must be at least 1, got {}".format(devices))
    index = check_device(device, devices)
    if device.startswith("cuda"):
        import torch

        available = torch.cuda.device_count()
        if devices > 1 and devices > available:
            raise UserError("--gpus-per-trial {}: this machine has {} GPU(s); give at most {} or run on a Ray cluster "
                            "that has them (--ray-address)".format(devices, available, available))
        if available == 0:
            raise UserError("--device {}: torch sees no CUDA GPU on this machine (torch {}); use --device cpu or run "
                            "on a Ray cluster that has GPUs (--ray-address)".format(device, torch.__version__))
        if index is not None and index >= available:
            raise UserError("--device {}: this machine has {} GPU(s), cuda:0..cuda:{}; give one of them".format(
                device, available, available - 1))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(target: Callable[..., None], args: Tuple[Any, ...], world: int) -> None:
    """Run ``target(group, *args)`` in ``world`` spawned processes joined into one process group; a rank
    that fails ends the others and raises here."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(_rank_main, args=(world, port, target, args), nprocs=world, start_method="spawn", join=True)


def _rank_main(rank: int, world: int, port: int, target: Callable[..., None], args: Tuple[Any, ...]) -> None:
    import torch
    import torch.distributed as dist

    device = args[0].device if hasattr(args[0], "device") else "cpu"
    if str(device).startswith("cuda"):
        torch.cuda.set_device(rank)
        backend, device = "nccl", "cuda:{}".format(rank)
    else:
        backend, device = "gloo", "cpu"
    dist.init_process_group(backend, init_method="tcp://127.0.0.1:{}".format(port), rank=rank, world_size=world)
    try:
        target(Group(rank, world, device), *args)
    finally:
        dist.destroy_process_group()


def prepare_model(model: Any, group: Group) -> Any:
    """``model`` with synchronised BatchNorm, wrapped in DistributedDataParallel (unchanged for one rank)."""
    if group.world == 1:
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if group.device.startswith("cuda"):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[torch.device(group.device).index])
    return DistributedDataParallel(convert_cpu_sync_batchnorm(model))


def convert_cpu_sync_batchnorm(module: Any) -> Any:
    import torch

    if isinstance(module, torch.nn.BatchNorm2d):
        converted = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum)
        converted.to(module.weight.device, module.weight.dtype)
        converted.load_state_dict(module.state_dict())
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_cpu_sync_batchnorm(child))
    return module


def _cpu_sync_batchnorm_class() -> Any:
    import torch
    import torch.distributed as dist

    class _SumOverRanks(torch.autograd.Function):
        """all_reduce(sum) with its gradient (also a sum over the ranks: each rank's loss depends on
        every rank's statistics)."""

        @staticmethod
        def forward(ctx: Any, values: Any) -> Any:
            values = values.clone()
            dist.all_reduce(values)
            return values

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            grad = grad.clone()
            dist.all_reduce(grad)
            return grad

    class _CpuSyncBatchNorm(torch.nn.BatchNorm2d):
        """BatchNorm2d whose training statistics are those of the whole global batch."""

        def forward(self, x: Any) -> Any:
            if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
                return super().forward(x)
            # Two passes (mean, then squared deviations from it): E[x^2] - E[x]^2 loses the variance of
            # channels whose mean is large against their spread.
            count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
            sums = _SumOverRanks.apply(torch.cat([count, x.sum(dim=(0, 2, 3))]))
            total = sums[0]
            mean = sums[1:] / total
            centred = x - mean[None, :, None, None]
            var = _SumOverRanks.apply((centred * centred).sum(dim=(0, 2, 3))) / total
            momentum = 0.1 if self.momentum is None else self.momentum
            with torch.no_grad():
                self.num_batches_tracked += 1
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                unbiased = var.detach() * total / max(float(total) - 1.0, 1.0)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
            scale = self.weight / torch.sqrt(var + self.eps)
            return centred * scale[None, :, None, None] + self.bias[None, :, None, None]

    return _CpuSyncBatchNorm


def CpuSyncBatchNorm(num_features: int, eps: float, momentum: float) -> Any:  # noqa: N802 (a class factory)
    return _cpu_sync_batchnorm_class()(num_features, eps=eps, momentum=momentum)


def all_reduce_sum(values: Any, group: Group) -> Any:
    """The sum of ``values`` over the ranks (itself for one rank)."""
    if group.world == 1:
        return values
    import torch.distributed as dist

    dist.all_reduce(values)
    return values


def barrier(group: Group) -> None:
    if group.world > 1:
        import torch.distributed as dist

        dist.barrier()


def local_threads(threads: int, world: int) -> int:
    """Intra-op threads per rank: the trial's share of this machine's cores."""
    return threads or max(1, (os.cpu_count() or 1) // world)
