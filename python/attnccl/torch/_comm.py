"""attnccl.torch.Communicator: an attnccl communicator bootstrapped over torch.distributed."""
import atexit
import itertools
import threading
import weakref

import torch

from .. import core

# Custom ops take plain values, not Python objects: a communicator goes into them as its key.
_REGISTRY = weakref.WeakValueDictionary()
_KEYS = itertools.count(1)
_LOCK = threading.Lock()


class Communicator(core.Communicator):
    """An attnccl communicator (CPU unless `device` is given) that torch ops can name by `key`."""

    def __init__(self, nranks, rank, uid, **config):
        super().__init__(nranks, rank, uid, **config)
        self.device = config.get("device", core.DEVICE_CPU)
        with _LOCK:
            self.key = next(_KEYS)
            _REGISTRY[self.key] = self

    @property
    def size(self):
        return self.nranks

    @classmethod
    def from_process_group(cls, group=None, **config):
        """Every rank of `group` (default: the world) calls this: group rank 0 makes the unique id,
        torch.distributed broadcasts it (gloo or nccl), and each rank joins with its group rank.
        With the nccl backend the communicator is on torch.cuda.current_device() unless `device`
        is given. The communicator is destroyed at interpreter exit if not before (destroy())."""
        import torch.distributed as dist
        if not dist.is_initialized():
            raise RuntimeError("attnccl.torch.Communicator.from_process_group: torch.distributed is not "
                               "initialised (call torch.distributed.init_process_group first)")
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        if rank < 0:
            raise RuntimeError("from_process_group: this process is not a member of the group")
        if dist.get_backend(group) == "nccl" and "device" not in config:
            config["device"] = torch.cuda.current_device()
        # The id travels as a uint8 tensor (on the GPU for nccl): no pickling, no numpy needed.
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else "cpu"
        buf = torch.zeros(core.UNIQUE_ID_BYTES, dtype=torch.uint8)
        if rank == 0:
            buf = torch.frombuffer(bytearray(core.unique_id()), dtype=torch.uint8)
        buf = buf.to(dev)
        src = dist.get_global_rank(group, 0) if group is not None else 0
        dist.broadcast(buf, src=src, group=group)
        comm = cls(size, rank, bytes(buf.cpu().tolist()), **config)
        _AT_EXIT.add(comm)
        return comm

    def destroy(self):
        with _LOCK:
            _REGISTRY.pop(getattr(self, "key", None), None)
        super().destroy()


_AT_EXIT = weakref.WeakSet()


@atexit.register
def _destroy_at_exit():
    for comm in list(_AT_EXIT):
        try:
            comm.destroy()
        except Exception:  # exit path: nothing left to report to
            pass


def lookup(key):
    comm = _REGISTRY.get(key)
    if comm is None:
        raise ValueError("attnccl communicator %d does not exist (destroyed?)" % key)
    return comm
