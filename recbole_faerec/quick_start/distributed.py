"""Distributed (DDP) runs, including CPU-only machines with the gloo backend.

RecBole 1.2.1 launches DDP with ``torch.multiprocessing.spawn`` but hard-codes NCCL and CUDA. When
CUDA is not available (or ``ddp_backend: gloo`` is set) the plugin, inside each worker only:

* opens the process group with ``gloo`` and trains on the CPU (:class:`~recbole_faerec.config.Config`);
* builds RecBole's ``DistributedDataParallel`` without ``device_ids`` (a CPU module has none) and
  without re-broadcasting buffers every step (FAERec's frozen LLM table is identical on all ranks);
* waits for rank 0 after each checkpoint save: otherwise another rank may ``torch.load`` the best
  checkpoint while rank 0 is still writing it (an upstream race, ``EOFError``).
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

_patched = False


def use_gloo(config) -> bool:
    backend = config["ddp_backend"] if "ddp_backend" in config else None
    return backend == "gloo" or not torch.cuda.is_available()


def _cpu_ddp(module, *args, device_ids=None, **kwargs):
    if next(module.parameters()).device.type == "cpu":
        device_ids = None
        kwargs.setdefault("broadcast_buffers", False)
    return DistributedDataParallel(module, *args, device_ids=device_ids, **kwargs)


def enable_cpu_ddp() -> None:
    """Patch RecBole's trainer module for CPU DDP (idempotent; workers only)."""
    global _patched
    if _patched:
        return
    import recbole.trainer.trainer as trainer_module

    trainer_module.DistributedDataParallel = _cpu_ddp
    original = trainer_module.Trainer._save_checkpoint

    @functools.wraps(original)
    def save_then_wait(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not self.config["single_spec"] and dist.is_initialized():
            dist.barrier()
        return result

    trainer_module.Trainer._save_checkpoint = save_then_wait
    _patched = True
