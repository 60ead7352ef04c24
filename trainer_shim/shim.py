"""TrainerShim: the object a training loop keeps for its whole life.

Its value is that people leave it on, so every public method is cheap, never raises into the
loop and never blocks on disk: problems are reported once (``ShimWarning``) and the shim turns
itself off. See docs/shim.md for the tags, the defaults and what they cost.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tensorboardX.proto.summary_pb2 import HistogramProto, Summary

from tbmon.trainer_shim import distributed, stats
from tbmon.trainer_shim.writer import Built, EventWriter, Record

if TYPE_CHECKING:
    from tbmon.analyzers import Alert, AnalyzerConfig
    from tbmon.trainer_shim.guard import Guard

# Keyword shortcuts for the contract's conventional tags (keywords cannot contain "/").
TAG_ALIASES = {
    "loss": "train/loss",
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "lr": "train/learning_rate",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
}


class ShimWarning(RuntimeWarning):
    """The shim hit a problem; it says so once and training goes on."""


def _scalar(tag: str, value: float) -> Summary.Value:
    return Summary.Value(tag=tag, simple_value=value)


def _histogram(tag: str, s: stats.ParamStats) -> Summary.Value:
    """The fixed layout, trimmed to its non-empty buckets (as TensorBoard drops the rest)."""
    nonempty = np.flatnonzero(s.bucket_counts)
    lo, hi = (int(nonempty[0]), int(nonempty[-1]) + 1) if nonempty.size else (0, 0)
    histo = HistogramProto(
        min=s.min,
        max=s.max,
        num=s.numel,
        sum=s.sum,
        sum_squares=s.sum_squares,
        bucket_limit=stats.BUCKET_LIMITS[lo:hi].tolist(),
        bucket=s.bucket_counts[lo:hi].tolist(),
    )
    return Summary.Value(tag=tag, histo=histo)


class _UpdateRatios:
    """‖Δw‖/‖w‖ on the fixed weight subsample since the previous histogram step (writer thread)."""

    def __init__(self) -> None:
        self._previous: dict[str, np.ndarray] = {}

    def ratio(self, name: str, sample: np.ndarray) -> float | None:
        before = self._previous.get(name)
        self._previous[name] = sample
        if before is None or before.shape != sample.shape or sample.size == 0:
            return None
        norm = float(np.linalg.norm(sample))
        return float(np.linalg.norm(sample - before)) / norm if norm > 0 else math.inf


class TrainerShim:
    """Logs losses and cheap gradient statistics to TensorBoard event files from a training loop.

    ``hist_every`` (100): ``grad/<p>`` histograms plus the exact per-parameter scalars
    (``grad_norm``, ``grad_zero_frac``, ``grad_nonfinite``, ``weight_norm``, ``update_ratio``).
    ``norms_every`` (10): ``grad_norm/<p>`` and ``train/grad_norm`` only (one fused norm pass).
    ``scalars_every`` (1): how often ``log_scalars`` writes (a non-finite float always is).
    Steps where ``step % every == 0`` log; 0 turns a kind off.
    ``guard=True`` (implied by ``on_alert``) runs tbmon's analyzers on the written file from
    the writer thread (``tbmon.trainer_shim.guard``): ``alerts`` lists what they raised, and
    ``on_alert(alert)`` is called on the writer thread for each, so it must be quick.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        model: torch.nn.Module | None = None,
        *,
        hist_every: int = 100,
        norms_every: int = 10,
        scalars_every: int = 1,
        log_weights: bool = True,
        rank_zero_only: bool = True,
        reduce_across_ranks: bool = False,
        flush_secs: float = 0.5,
        max_queue: int = 1000,
        guard: bool = False,
        on_alert: Callable[[Alert], None] | None = None,
        guard_config: AnalyzerConfig | None = None,
    ) -> None:
        self.model = model
        self.hist_every = hist_every
        self.norms_every = norms_every
        self.scalars_every = scalars_every
        self.log_weights = log_weights
        self.reduce_across_ranks = reduce_across_ranks
        self.rank = distributed.rank()
        self._reported: set[str] = set()
        self._updates = _UpdateRatios()
        self._writer: EventWriter | None = None
        self._guard: Guard | None = None
        self.logdir = os.fspath(logdir)
        if not rank_zero_only:
            self.logdir = os.path.join(self.logdir, f"rank{self.rank}")
        if rank_zero_only and self.rank != 0:
            return  # this rank never writes; it still joins collectives in log_gradients
        if guard or on_alert is not None:
            self._guard = self._start_guard(guard_config, on_alert)
        after_sync = self._guard.check if self._guard is not None else None
        self._writer = EventWriter(self.logdir, self.rank, flush_secs, max_queue, after_sync)
        if self._guard is not None:
            self._guard.follow(self._writer.path)
        self._finalizer = weakref.finalize(self, self._writer.close)
        self._check_writer()

    # -- public API -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """True while this rank writes and no write error has happened."""
        return self._writer is not None and self._writer.alive

    @property
    def path(self) -> str | None:
        """The event file this shim writes (None on ranks that do not write)."""
        return self._writer.path if self._writer is not None else None

    @property
    def alerts(self) -> list[Alert]:
        """Alerts the guard has raised so far, oldest first (empty without the guard)."""
        return self._guard.alerts if self._guard is not None else []

    def log_scalars(self, step: int, values: Mapping[str, Any] | None = None, /, **named: Any) -> None:
        """Write scalars at ``step``: ``values`` maps any tag; keywords use ``TAG_ALIASES``.

        Values are numbers or 0-d tensors; tensors are copied to the host in one transfer and
        converted on the writer thread, so a CUDA loss never forces a sync here.
        """
        if not self.enabled:
            return
        try:
            tags = self._valid_values({**(values or {}), **{TAG_ALIASES.get(k, k): v for k, v in named.items()}})
            due = self.scalars_every > 0 and step % self.scalars_every == 0
            if not due and all(isinstance(v, torch.Tensor) or math.isfinite(v) for v in tags.values()):
                return
            build, urgent = self._scalar_builder(tags)
            self._submit(step, build, urgent=urgent)
        except Exception as exc:  # noqa: BLE001 - never break training
            self._fail("log_scalars", exc)

    def log_gradients(self, step: int) -> None:
        """Record gradient statistics of ``model``; call after ``backward()``, before ``zero_grad``.

        With ``reduce_across_ranks=True`` every rank must call this at the same steps (it runs
        one ``all_gather``), with the same parameters holding gradients.
        """
        do_hist = self.hist_every > 0 and step % self.hist_every == 0
        do_norms = self.norms_every > 0 and step % self.norms_every == 0
        joins_collective = distributed.gathers(self.reduce_across_ranks)
        if not (do_hist or do_norms) or not (self.enabled or joins_collective):
            return
        if self.model is None:
            self._report("no-model", "TrainerShim.log_gradients needs a model; gradients are not logged")
            return
        try:
            params = [
                (n, p)
                for n, p in self.model.named_parameters()
                if p.grad is not None and p.grad.numel() > 0 and not p.grad.is_sparse
            ]
            if not params:
                return
            names = [n for n, _ in params]
            grads = [p.grad for _, p in params]
            if do_hist:
                weights = [p.detach() for _, p in params] if self.log_weights else None
                rows = stats.full_rows(grads, weights)  # type: ignore[arg-type]
            else:
                rows = stats.norm_rows(grads)  # type: ignore[arg-type]
            gathered = distributed.gather_rows(rows, self.reduce_across_ranks)
            if not self.enabled:
                return
            host = stats.to_host(gathered)
            builder = self._full_builder(names, host) if do_hist else self._norm_builder(names, host)
            self._submit(step, builder, bulky=True)
        except Exception as exc:  # noqa: BLE001 - never break training
            self._fail("log_gradients", exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything logged so far is in the file; False if that did not happen."""
        if not self.enabled:
            return False
        assert self._writer is not None
        done = self._writer.flush(timeout)
        self._check_writer()
        return done

    def close(self) -> None:
        """Write everything still queued, fsync and close the file (also runs at exit)."""
        if self._writer is None:
            return
        self._finalizer()
        self._check_writer()

    def __enter__(self) -> TrainerShim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _submit(self, step: int, build: Any, *, urgent: bool = False, bulky: bool = False) -> None:
        assert self._writer is not None
        self._writer.submit(Record(int(step), time.time(), build, bulky), urgent=urgent)
        self._check_writer()

    def _start_guard(self, config: AnalyzerConfig | None, on_alert: Callable[[Alert], None] | None) -> Guard | None:
        try:
            from tbmon.trainer_shim.guard import Guard

            return Guard(self.logdir, config, on_alert, note=lambda step, build: self._submit(step, build))
        except Exception as exc:  # noqa: BLE001 - e.g. a bad [tool.tbmon] table: log without the guard
            self._report("guard", f"tbmon shim runs without its guard: {type(exc).__name__}: {exc}")
            return None

    def _valid_values(self, tags: dict[str, Any]) -> dict[str, Any]:
        """Numbers as floats and one-element tensors; anything else is skipped (warned once per tag)."""
        out: dict[str, Any] = {}
        for tag, value in tags.items():
            if isinstance(value, torch.Tensor):
                if value.numel() == 1:
                    out[tag] = value
                    continue
            elif not isinstance(value, (str, bytes)):
                try:
                    out[tag] = float(value)
                    continue
                except (TypeError, ValueError):
                    pass
            self._report(f"value:{tag}", f"tbmon shim ignores {tag!r}: not a number or one-element tensor")
        return out

    def _scalar_builder(self, tags: dict[str, Any]) -> tuple[Any, bool]:
        """The writer-thread closure, and whether a non-finite value is already known here.

        Floats are checked at once; tensors when their host copy has already landed (always
        on CPU; on CUDA the writer sees them at its next pass, within ``flush_secs``).
        """
        tensor_tags = [t for t, v in tags.items() if isinstance(v, torch.Tensor)]
        numbers = {t: v for t, v in tags.items() if not isinstance(v, torch.Tensor)}
        urgent = not all(math.isfinite(v) for v in numbers.values())
        host = None
        if tensor_tags:
            stacked = torch.stack([tags[t].detach().reshape(()).double() for t in tensor_tags])
            host = stats.to_host(stacked)
            landed = host.numpy_if_ready()
            urgent = urgent or (landed is not None and not np.isfinite(landed).all())

        def build() -> Built:
            values = dict(numbers)
            if host is not None:
                values.update(zip(tensor_tags, host.numpy().tolist()))
            nonfinite = not all(math.isfinite(v) for v in values.values())
            return [_scalar(t, v) for t, v in values.items()], nonfinite

        return build, urgent

    def _norm_builder(self, names: list[str], host: stats.HostCopy) -> Any:
        def build() -> Built:
            sumsq = host.numpy().sum(axis=0)
            return self._norm_values(names, sumsq)

        return build

    @staticmethod
    def _norm_values(names: list[str], sumsq: np.ndarray) -> Built:
        norms = np.sqrt(sumsq)
        values = [_scalar(f"grad_norm/{n}", float(v)) for n, v in zip(names, norms)]
        total = float(np.sqrt(sumsq.sum()))
        values.append(_scalar("train/grad_norm", total))
        return values, not math.isfinite(total)

    def _full_builder(self, names: list[str], host: stats.HostCopy) -> Any:
        def build() -> Built:
            params = stats.decode(host.numpy())
            values, urgent = self._norm_values(names, np.array([p.sum_squares for p in params]))
            for name, p in zip(names, params):
                values.append(_histogram(f"grad/{name}", p))
                values.append(_scalar(f"grad_zero_frac/{name}", p.zeros / p.numel))
                values.append(_scalar(f"grad_nonfinite/{name}", p.nonfinite))
                if self.log_weights:
                    values.append(_scalar(f"weight_norm/{name}", math.sqrt(p.weight_sum_squares)))
                    ratio = self._updates.ratio(name, p.weight_sample)
                    if ratio is not None:
                        values.append(_scalar(f"update_ratio/{name}", ratio))
            return values, urgent or any(p.nonfinite for p in params)

        return build

    def _check_writer(self) -> None:
        writer = self._writer
        if writer is None:
            return
        if writer.error is not None:
            self._report(
                "write",
                f"tbmon shim stopped logging to {self.logdir!r}: {type(writer.error).__name__}: {writer.error}; "
                "training continues",
            )
        if self._guard is not None and self._guard.error is not None:
            error = self._guard.error
            self._report("guard", f"tbmon shim guard stopped: {type(error).__name__}: {error}; logging continues")
        if writer.dropped:
            self._report(
                "dropped", f"tbmon shim writer fell behind; dropped {writer.dropped} record(s) so far (gradient statistics first)"
            )

    def _fail(self, where: str, exc: Exception) -> None:
        if self._writer is not None and self._writer.error is None:
            self._writer.error = exc
        self._report("internal", f"tbmon shim disabled after an error in {where}: {type(exc).__name__}: {exc}")

    def _report(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        warnings.warn(message, ShimWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """``stacklevel`` that points the warning at the user's line, not at the shim's internals."""
    here = os.path.dirname(__file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame, level = frame.f_back, level + 1
    return level
