"""Processes of a training run: one plain process, or several started by torchrun (DDP).

torchrun sets WORLD_SIZE / RANK / LOCAL_RANK (and the rendezvous address) in every process; this
module turns them into a :class:`Parallel` context: which device this process uses, whether it is
the one that writes files, and the few collectives training needs. gloo on CPU, nccl on CUDA.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from runtime import DeviceError, select_device


def launched_by_torchrun(environ=None):
    """True when torchrun (or another launcher with the same variables) started this process."""
    environ = os.environ if environ is None else environ
    return "WORLD_SIZE" in environ and "RANK" in environ and "LOCAL_RANK" in environ


@dataclass
class Parallel:
    """This process's place in the run. A single process is rank 0 of 1 and has no process group."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        """The process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    def sum(self, tensor):
        """All-reduce (sum) in place across processes; the tensor itself when there is one process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag):
        """True on every process when ``flag`` is true on at least one of them."""
        if not self.distributed:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.sum(value).item() > 0)

    def broadcast(self, obj):
        """Rank 0's Python object, on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather(self, obj):
        """Every process's object, as a list on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self):
        if self.distributed:
            dist.barrier()


def start(device_request="auto", environ=None):
    """The Parallel context of this process; joins the process group under torchrun.

    Under torchrun each process takes ``cuda:LOCAL_RANK`` when the request allows CUDA ('auto',
    'cuda') and CUDA is there, else the CPU with gloo. A single process uses ``select_device``.
    """
    environ = os.environ if environ is None else environ
    if not launched_by_torchrun(environ):
        return Parallel(device=select_device(device_request))
    rank, world_size = int(environ["RANK"]), int(environ["WORLD_SIZE"])
    local_rank = int(environ["LOCAL_RANK"])
    request = (device_request or "auto").strip().lower()
    if request == "cpu":
        device = torch.device("cpu")
    elif request == "auto" and not torch.cuda.is_available():
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {request}: no CUDA device on this machine; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(f"torchrun started {local_rank + 1}+ processes on this machine but it has only "
                              f"{torch.cuda.device_count()} CUDA device(s): lower --nproc_per_node")
        # One GPU per process: the process's local rank picks it, whatever index --device named.
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return Parallel(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def finish(parallel, wait=True):
    """Leave the process group; ``wait`` for the others first (not after a failure: they may be gone)."""
    if parallel.distributed and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
