"""The framework-independent half of the Lightning and Hugging Face callbacks.

A callback only translates its framework's hooks into four calls: ``gradients`` (before the
optimizer step), ``add_loss`` (each micro-batch), ``end_step`` (after the optimizer step) and
``validation``. Everything else (the shim, the guard, the alert policy, the tags) lives here
once, so the two callbacks log the same tags at the same step numbers.

Step numbers: a training value is logged at the index of its optimizer step (0 for the
first), the same for gradients, loss and learning rate; a validation loss at the last step
trained before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from tbmon.analyzers import AnalyzerConfig
from tbmon.analyzers.signals import VAL_LOSS, SignalMatcher
from tbmon.trainer_shim.policy import AlertPolicy, known_nonfinite
from tbmon.trainer_shim.shim import TrainerShim

# How long a step with a known non-finite loss waits for the guard to judge it (it normally
# takes a few ms); only with a stopping policy, so the stop lands on that very step.
GUARD_WAIT_SECS = 2.0


def on_host(value: Any) -> Any:
    """A CPU tensor as a float (free, and the shim's cheapest path); a GPU tensor as is (no sync)."""
    if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.numel() == 1:
        return value.item()
    return value


def learning_rates(optimizers: Iterable[torch.optim.Optimizer]) -> dict[str, float]:
    """``train/learning_rate`` for the first param group; ``learning_rate/opt<i>/pg<j>`` for the rest.

    The extra groups' tags match no tbmon signal on purpose: the rules read one learning rate.
    """
    out: dict[str, float] = {}
    for i, optimizer in enumerate(optimizers):
        for j, group in enumerate(optimizer.param_groups):
            lr = group.get("lr")
            if isinstance(lr, torch.Tensor):
                lr = float(lr)
            if not isinstance(lr, (int, float)):
                continue
            out["train/learning_rate" if not out else f"learning_rate/opt{i}/pg{j}"] = float(lr)
    return out


_MATCHER = SignalMatcher()


def find_val_loss(metrics: Mapping[str, Any]) -> Any:
    """The value of the first metric tbmon reads as a validation loss (``val_loss``, ``val/loss``...)."""
    for key in sorted(metrics):
        match = _MATCHER.classify(key, histogram=False)
        if match is not None and match.signal == VAL_LOSS:
            return metrics[key]
    return None


class CallbackCore:
    """Owns the shim (created lazily, once the process knows its rank) and the alert policy."""

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        on_alert: str,
        severity: str,
        guard: bool,
        guard_config: AnalyzerConfig | None,
        shim_options: Mapping[str, Any],
    ) -> None:
        self.logdir = os.fspath(logdir)
        self.policy = AlertPolicy(on_alert, severity)
        if self.policy.stops and not guard:
            raise ValueError(f"TbmonCallback(on_alert={on_alert!r}) needs the guard: drop guard=False")
        self.guard = guard
        self.guard_config = guard_config
        self.shim_options = dict(shim_options)
        self.shim: TrainerShim | None = None
        self.stopped_at: int | None = None
        self._loss_sum: torch.Tensor | float | None = None
        self._loss_count = 0
        self._lrs: dict[str, float] = {}

    def start(self, model: torch.nn.Module, *, reduce_across_ranks: bool = False) -> None:
        """Create the shim (idempotent): in a framework's setup hook, after the process group exists."""
        if self.shim is not None:
            return
        self.shim = TrainerShim(
            self.logdir,
            model,
            reduce_across_ranks=reduce_across_ranks,
            on_alert=self.policy.handle if self.guard else None,
            guard_config=self.guard_config,
            **self.shim_options,
        )

    def gradients(self, step: int, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Before the optimizer step: gradient statistics, and the learning rate(s) this step uses."""
        if self.shim is None:
            return
        self.shim.log_gradients(step)
        if self.shim.enabled:
            self._lrs = learning_rates(optimizers)

    def add_loss(self, loss: Any) -> None:
        """One micro-batch's loss (a tensor stays on its device: no sync)."""
        if loss is None:
            return
        value = loss.detach() if isinstance(loss, torch.Tensor) else loss
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += 1

    def end_step(self, step: int, *, summed: bool) -> None:
        """After the optimizer step: the step's loss (sum or mean of its micro-batches) and lr."""
        loss, count = self._loss_sum, self._loss_count
        self._loss_sum, self._loss_count = None, 0
        if self.shim is None or not self.shim.enabled:
            return
        values: dict[str, Any] = dict(self._lrs)
        if loss is not None:
            values["train/loss"] = on_host(loss if summed or count == 1 else loss / count)
        if values:
            self.shim.log_scalars(step, values)
        if self.policy.stops and loss is not None and known_nonfinite(values["train/loss"]):
            self.shim.flush(GUARD_WAIT_SECS)  # the guard judges this very step before we go on

    def validation(self, step: int, value: Any) -> None:
        if self.shim is not None and value is not None:
            value = on_host(value)
            self.shim.log_scalars(step, {"val/loss": value})
            if self.policy.stops and known_nonfinite(value):
                self.shim.flush(GUARD_WAIT_SECS)

    def stop_requested(self) -> bool:
        """Log the alerts raised so far; whether this process's guard asks the trainer to stop."""
        self.policy.report_pending(self.logdir)
        return self.stopped_at is None and self.policy.stop_alert is not None

    def stopping(self, step: int, checkpoint: str | None) -> None:
        """Record (and say) that the trainer is being stopped at ``step``."""
        self.stopped_at = step
        if self.policy.stop_alert is not None:
            self.policy.report_stop(self.logdir, step, checkpoint)

    def close(self) -> None:
        if self.shim is not None:
            self.shim.close()
            self.policy.report_pending(self.logdir)


class TbmonCallbackBase:
    """The constructor and ``alerts`` shared by the Lightning and Hugging Face callbacks.

    ``severity`` is the least severe alert the policy acts on; ``hist_every``, ``norms_every``,
    ``scalars_every`` and ``log_weights`` are the shim's (defaults: 100, 10, 1, True);
    ``guard=False`` only logs; ``guard_config`` replaces the ``[tool.tbmon]`` configuration.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        on_alert: str = "warn",
        severity: str = "critical",
        hist_every: int = 100,
        norms_every: int = 10,
        scalars_every: int = 1,
        log_weights: bool = True,
        guard: bool = True,
        guard_config: AnalyzerConfig | None = None,
    ) -> None:
        self.core = CallbackCore(
            logdir,
            on_alert=on_alert,
            severity=severity,
            guard=guard,
            guard_config=guard_config,
            shim_options={
                "hist_every": hist_every,
                "norms_every": norms_every,
                "scalars_every": scalars_every,
                "log_weights": log_weights,
            },
        )

    @property
    def alerts(self) -> list[Any]:
        """The guard's alerts so far (empty on processes that do not write)."""
        return self.core.shim.alerts if self.core.shim is not None else []
