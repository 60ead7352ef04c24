"""In-loop PyTorch writer: losses and cheap on-device gradient statistics as TensorBoard events.

Needs torch (``pip install tbmon[shim]``). Usage::

    with TrainerShim("runs/exp1", model) as shim:
        for step, batch in enumerate(loader):
            loss = ...; loss.backward()
            shim.log_gradients(step)
            opt.step(); opt.zero_grad()
            shim.log_scalars(step, loss=loss, lr=sched.get_last_lr()[0])
"""

from __future__ import annotations

try:
    import torch  # noqa: F401 - only to fail early with the fix, not a bare ModuleNotFoundError
except ModuleNotFoundError as exc:
    if exc.name != "torch":
        raise
    raise ModuleNotFoundError(
        "tbmon.trainer_shim needs PyTorch: pip install 'tbmon[shim]' (or install torch for your platform); "
        "tbmon watch and tbmon report work without it",
        name="torch",
    ) from None

from tbmon.trainer_shim.shim import TAG_ALIASES, ShimWarning, TrainerShim
from tbmon.trainer_shim.stats import BUCKET_LIMITS, HIST_SAMPLE, UPDATE_SAMPLE

__all__ = ["BUCKET_LIMITS", "HIST_SAMPLE", "TAG_ALIASES", "UPDATE_SAMPLE", "ShimWarning", "TrainerShim"]
