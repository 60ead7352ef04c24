"""`tbmon demo`: two real CPU trainings logged with the shim, watched live by `tbmon watch`.

One run trains a small MLP with a sane learning rate; the other raises its learning rate
every step until the loss overflows to NaN, as a mis-set schedule does. Both run on
background threads (torch releases the GIL in its kernels) while the very same watch code as
`tbmon watch` follows the folder, so a newcomer sees the dashboard fill in and a real
divergence alert within about 20 seconds. It exits by itself when both trainings end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from tbmon.monitor.config import load_config
from tbmon.monitor.watch import WatchOptions, watch

HELP = "train two tiny models on CPU (one healthy, one diverging) and watch them live"
DESCRIPTION = """\
Train two small models on the CPU for ~20 s, logging with tbmon.trainer_shim into a temporary
folder, and follow them with `tbmon watch`: one run is healthy, the other raises its learning
rate until the loss becomes NaN, and the divergence alert appears while it happens.
Needs PyTorch (pip install 'tbmon[shim]'). Exit code 0 when the alert was seen.
"""

STEP_SECONDS = 0.05
"""Pause per training step: the tiny model trains in ~1 ms a step, far too fast to watch."""
HEALTHY_STEPS = 300  # ~15 s at STEP_SECONDS: the healthy curve is still moving after the alert (~6 s in)
LR_GROWTH = 1.04
"""Diverging run: lr x1.04 per step from 0.01 leaves SGD's stable range of this MLP after ~100
steps; measured over three init seeds the loss is NaN from step 126-127, i.e. ~7 s in (126 with the
seeded init below: one incident of five alerts, the same on every run)."""
STEPS_AFTER_NAN = 10  # a real job would crash or be killed; keep logging a moment, then stop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", metavar="DIR", help="write the logs to DIR and keep them (default: a temp folder, deleted)")
    parser.add_argument("--format", choices=("rich", "plain", "jsonl"), help="as for `tbmon watch`")


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401 - only checking that it is there
    except ImportError:
        print("tbmon: `tbmon demo` trains with PyTorch, which is not installed: pip install 'tbmon[shim]'", file=sys.stderr)
        return 2
    logdir = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="tbmon-demo-"))
    logdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    failures: list[str] = []
    trainings = [
        threading.Thread(target=_guarded, args=(logdir / "healthy", 0.05, 1.0, stop, failures)),
        threading.Thread(target=_guarded, args=(logdir / "diverging", 0.01, LR_GROWTH, stop, failures)),
    ]
    for thread in trainings:
        thread.start()

    def stop_when_trained() -> None:
        for thread in trainings:
            thread.join()
        stop.set()

    threading.Thread(target=stop_when_trained, daemon=True).start()
    interactive = sys.stdout.isatty()
    options = WatchOptions(
        logdirs=[str(logdir)],
        fmt=args.format or ("rich" if interactive else "plain"),
        config=load_config(None),
        fail_on="never",
        state_path=None,
    )
    try:
        session = watch(options, stop)
    finally:
        stop.set()
        for thread in trainings:
            thread.join()
    for failure in failures:
        print(f"tbmon demo: a training failed: {failure}", file=sys.stderr)
    seen = any(a.run == "diverging" and a.kind == "divergence" for a in session.all_alerts())
    if args.keep:
        print(f"logs kept in {logdir} (try: tbmon report {logdir})")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
        print("logs deleted; rerun with --keep DIR to keep them")
    if not seen:
        print("tbmon demo: the diverging run raised no divergence alert (unexpected)", file=sys.stderr)
        return 1
    return 0


def _guarded(run_dir: Path, lr: float, lr_growth: float, stop: threading.Event, failures: list[str]) -> None:
    try:
        _train(run_dir, lr, lr_growth, stop)
    except Exception as exc:  # noqa: BLE001 - reported after the watch ends, never a traceback mid-dashboard
        failures.append(f"{run_dir.name}: {type(exc).__name__}: {exc}")


def _train(run_dir: Path, lr: float, lr_growth: float, stop: threading.Event) -> None:
    """A 2-layer MLP fitting a smooth function with SGD; validation loss every 20 steps; ends early on ``stop``."""
    import torch

    from tbmon.trainer_shim import TrainerShim

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1024, 16, generator=generator)
    targets = torch.sin(inputs @ (0.25 * torch.randn(16, 1, generator=generator)))  # smooth: learnable
    train_x, train_y, val_x, val_y = inputs[:768], targets[:768], inputs[768:], targets[768:]
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    for layer in (model[0], model[2]):  # PyTorch's default init, drawn from the seeded generator: the same
        bound = layer.in_features ** -0.5  # curves, hence the same alerts, on every machine and every run
        for param in (layer.weight, layer.bias):
            torch.nn.init.uniform_(param, -bound, bound, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    after_nan = 0
    with TrainerShim(str(run_dir), model, hist_every=10) as shim:
        for step in range(HEALTHY_STEPS):
            if stop.is_set():
                return
            batch = torch.randint(0, 768, (64,), generator=generator)
            loss = loss_fn(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            shim.log_gradients(step)
            optimizer.step()
            shim.log_scalars(step, loss=loss.item(), learning_rate=optimizer.param_groups[0]["lr"])
            if step % 20 == 19:
                with torch.no_grad():
                    shim.log_scalars(step, val_loss=loss_fn(model(val_x), val_y).item())
            for group in optimizer.param_groups:
                group["lr"] *= lr_growth
            if not torch.isfinite(loss):
                after_nan += 1
                if after_nan > STEPS_AFTER_NAN:
                    return
            time.sleep(STEP_SECONDS)
