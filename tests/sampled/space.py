"""The configuration space: one seed -> one training configuration, drawn from wide distributions.

Nothing here is hand-picked per run: a seed picks a class of run with fixed probabilities, and every
knob of that class is drawn from a distribution (log-uniform learning rates over four decades,
batch 4-512, 300-5,000 steps, ...). The classes are the ones an independent evaluation found tbmon
getting wrong (issue #10) plus the problems it must keep finding; what a run really shows is decided
afterwards from its data (`labels.py`), never from its class: a "healthy" draw that happens to
overfit is labelled overfitting, a "never learns" draw that learns anyway is healthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# class -> probability. Healthy draws are ~40 % so that >= 120 of ~360 runs are healthy by label.
CLASSES: dict[str, float] = {
    "healthy": 0.40,
    "lr_too_high": 0.08,  # issue class 2: lr far too high from the first step
    "explode_init": 0.08,  # class 3: deep ReLU MLP / plain CNN at 1.5-2.2x He init
    "rnn_gain": 0.06,  # class 4: recurrent gain above 1, no clipping
    "lr_ramp": 0.06,  # class 5: exponential lr ramp until the loss overflows
    "never_learns": 0.08,  # class 6: deep tanh/sigmoid at default init, or an lr far too low
    "overfit": 0.14,  # small training sets, wide models, or the data loader collapsing mid-run
    "late_divergence": 0.10,  # a healthy run hit at a random step: lr jump, bad batch turning NaN
}
STYLES = ("slash", "flat", "lightning", "hf", "tf", "underscore", "keras")  # of tensorboardX / torch writers
HEALTHY_LR = {"sgd": (3e-3, 0.3), "momentum": (1e-3, 0.1), "adam": (1e-4, 3e-3), "adamw": (1e-4, 3e-3)}
MAX_WORK = 1e11  # steps x batch x parameters x a per-architecture factor: ~7 s of one core (measured ~1.5e10/s)


@dataclass(frozen=True)
class Config:
    """Everything that decides one training run; same config -> same event values on the same machine."""

    seed: int
    cls: str
    task: str  # digits | digits_img | teacher_reg | teacher_cls | seq | markov
    arch: str  # mlp | cnn | rnn | transformer
    depth: int  # MLP hidden layers / CNN conv layers / transformer blocks / RNN sequence length
    width: int
    act: str  # MLP/CNN activation; RNN cell: gru | lstm | tanh | relu
    init_gain: float | None  # MLP/CNN: x He-normal; RNN: x orthogonal recurrent weights; None = PyTorch default
    norm: str  # none | batchnorm | layernorm (MLP)
    dropout: float
    optimizer: str  # sgd | momentum | adam | adamw
    lr: float
    schedule: tuple  # ("const",) ("warmup_cosine", w) ("step", at, factor) ("sgdr", period) ("exp_decay", final) ("exp_ramp", final)
    batch: int
    steps: int
    n_train: int | None
    label_noise: float
    clip: float | None
    val_every: int
    hist_every: int  # 0: none
    norm_every: int  # per-layer / total norm scalars and HF/Lightning logging interval
    writer: str
    style: str
    events: tuple = field(default=())  # injected (step, kind, arg): corrupt | lr_jump | nan_input | starve

    @property
    def name(self) -> str:
        return f"s{self.seed:04d}_{self.cls}"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _architecture(rng: np.random.Generator, cls: str) -> dict:
    if cls == "explode_init":
        if rng.random() < 0.6:
            return {"arch": "mlp", "task": _pick(rng, ("digits", "teacher_cls", "teacher_reg")), "depth": int(rng.integers(16, 33)),
                    "width": int(_pick(rng, (32, 48, 64))), "act": "relu", "init_gain": float(rng.uniform(1.5, 2.2)), "norm": "none"}
        return {"arch": "cnn", "task": "digits_img", "depth": int(rng.integers(6, 13)), "width": int(_pick(rng, (8, 12, 16))),
                "act": "relu", "init_gain": float(rng.uniform(1.5, 2.2)), "norm": "none"}
    if cls == "rnn_gain":
        cell = _pick(rng, ("relu", "tanh"))
        gain = float(rng.uniform(1.2, 1.6)) if cell == "relu" else float(rng.uniform(2.0, 4.0))
        return {"arch": "rnn", "task": "seq", "depth": int(rng.integers(12, 31)), "width": int(_pick(rng, (16, 32, 64))),
                "act": cell, "init_gain": gain, "norm": "none"}
    if cls == "never_learns" and rng.random() < 0.6:
        return {"arch": "mlp", "task": _pick(rng, ("digits", "teacher_cls")), "depth": int(rng.integers(12, 25)),
                "width": int(_pick(rng, (32, 64))), "act": _pick(rng, ("tanh", "sigmoid")), "init_gain": None, "norm": "none"}
    if cls == "overfit":
        if rng.random() < 0.7:
            return {"arch": "mlp", "task": _pick(rng, ("digits", "teacher_cls", "teacher_reg")), "depth": int(rng.integers(1, 4)),
                    "width": int(_pick(rng, (256, 512))), "act": _pick(rng, ("relu", "gelu", "tanh")), "init_gain": None, "norm": "none"}
        return {"arch": "cnn", "task": "digits_img", "depth": int(rng.integers(2, 4)), "width": 16, "act": "relu",
                "init_gain": None, "norm": "none"}
    arch = _pick(rng, ("mlp", "cnn", "rnn", "transformer"), p=(0.5, 0.15, 0.15, 0.2))
    if arch == "mlp":
        depth = int(_pick(rng, (1, 2, 3, 4, 6, 8, 12, 20, 30, 40), p=(.16, .16, .14, .12, .1, .08, .08, .06, .05, .05)))
        act = _pick(rng, ("relu", "gelu", "tanh", "leaky_relu"), p=(.45, .25, .15, .15)) if depth <= 8 else _pick(rng, ("relu", "gelu"))
        norm = _pick(rng, ("none", "batchnorm", "layernorm"), p=(.5, .25, .25)) if depth > 8 else _pick(rng, ("none", "batchnorm", "layernorm"), p=(.7, .15, .15))
        width = 128 if depth <= 3 else 64 if depth <= 12 else 32
        init = None if rng.random() < 0.5 else float(rng.uniform(0.7, 1.1))
        return {"arch": "mlp", "task": _pick(rng, ("digits", "teacher_cls", "teacher_reg")), "depth": depth, "width": width,
                "act": act, "init_gain": init, "norm": norm}
    if arch == "cnn":
        return {"arch": "cnn", "task": "digits_img", "depth": int(rng.integers(2, 7)), "width": int(_pick(rng, (8, 16))),
                "act": _pick(rng, ("relu", "gelu", "tanh")), "init_gain": None if rng.random() < 0.5 else float(rng.uniform(0.7, 1.1)),
                "norm": "none"}
    if arch == "rnn":
        cell = _pick(rng, ("gru", "lstm", "tanh"), p=(.4, .4, .2))
        return {"arch": "rnn", "task": "seq", "depth": int(rng.integers(8, 21)), "width": int(_pick(rng, (16, 32, 64))),
                "act": cell, "init_gain": 1.0 if cell == "tanh" else None, "norm": "none"}
    return {"arch": "transformer", "task": "markov", "depth": int(rng.integers(1, 3)), "width": int(_pick(rng, (32, 48))),
            "act": "gelu", "init_gain": None, "norm": "layernorm"}


def _schedule(rng: np.random.Generator, steps: int) -> tuple:
    kind = _pick(rng, ("const", "warmup_cosine", "step", "sgdr", "exp_decay"), p=(.35, .25, .15, .12, .13))
    if kind == "warmup_cosine":
        return (kind, int(steps * rng.uniform(0.01, 0.1)) + 1)
    if kind == "step":
        return (kind, int(steps * rng.uniform(0.3, 0.8)), 0.1)
    if kind == "sgdr":
        return (kind, int(steps / rng.integers(2, 5)))
    if kind == "exp_decay":
        return (kind, float(rng.uniform(0.01, 0.3)))
    return ("const",)


def draw(seed: int) -> Config:
    """The configuration of run ``seed`` (deterministic)."""
    rng = np.random.default_rng([20261204, seed])
    cls = _pick(rng, tuple(CLASSES), p=tuple(CLASSES.values()))
    a = _architecture(rng, cls)
    optimizer = _pick(rng, ("sgd", "momentum", "adam", "adamw"), p=(.2, .3, .3, .2))
    if a["arch"] == "transformer":
        optimizer = _pick(rng, ("adam", "adamw"))
    lo, hi = HEALTHY_LR[optimizer]
    if a["arch"] == "rnn" and optimizer in ("sgd", "momentum"):
        lo, hi = lo * 3, hi * 3  # recurrent nets at batch-mean losses want a larger SGD step
    lr = _log_uniform(rng, lo, hi)
    steps = int(round(_log_uniform(rng, 300, 5000)))
    batch = int(round(_log_uniform(rng, 4, 512)))
    schedule = _schedule(rng, steps)
    n_train = None if rng.random() < 0.6 else int(_log_uniform(rng, 300, 1200))
    classification = a["task"] != "teacher_reg"
    label_noise = float(rng.uniform(0.05, 0.3)) if classification and a["task"] != "markov" and rng.random() < 0.35 else 0.0
    clip = float(_log_uniform(rng, 0.5, 5.0)) if rng.random() < 0.25 else None
    dropout = float(rng.uniform(0.1, 0.5)) if a["arch"] == "mlp" and rng.random() < 0.2 else 0.0
    events: list[tuple] = []
    if cls == "healthy" and rng.random() < 0.3:  # a few corrupted batches (shuffled targets / scaled inputs)
        for _ in range(int(rng.integers(1, 5))):
            events.append((int(rng.integers(steps // 10, steps)), "corrupt", float(_pick(rng, (0.0, 5.0)))))
    if cls == "lr_too_high":
        lr = hi * _log_uniform(rng, 30, 1000)
        schedule = _pick(rng, (("const",), ("warmup_cosine", int(rng.integers(2, 20)))))
        clip = None
    elif cls in ("rnn_gain", "explode_init"):
        clip = None  # the runs: nothing clips the explosion away
    elif cls == "lr_ramp":
        schedule = ("exp_ramp", float(_log_uniform(rng, 1e3, 1e5)))
        lr = lo * _log_uniform(rng, 0.3, 3)
        clip = None
    elif cls == "never_learns":
        if a["arch"] == "mlp" and a["act"] in ("tanh", "sigmoid") and a["depth"] >= 12:
            optimizer = _pick(rng, ("sgd", "momentum"))
            lr = _log_uniform(rng, *HEALTHY_LR[optimizer])
            dropout = 0.0
        else:
            lr = lo * _log_uniform(rng, 1e-3, 3e-2)  # far too low to move in the run's length
        label_noise, schedule = 0.0, ("const",)
    elif cls == "overfit":
        n_train = int(_log_uniform(rng, 30, 200))
        steps = int(round(_log_uniform(rng, 1500, 5000)))
        label_noise = float(rng.uniform(0.0, 0.3)) if classification else 0.0
        optimizer = _pick(rng, ("adam", "adamw", "momentum"))
        lr = _log_uniform(rng, *HEALTHY_LR[optimizer])
        dropout, clip = 0.0, None
        if rng.random() < 0.3:  # the data loader collapses to a few fixed batches mid-run
            n_train = None
            events.append((int(steps * rng.uniform(0.15, 0.5)), "starve", float(int(_log_uniform(rng, 16, 64)))))
        schedule = _pick(rng, (("const",), ("warmup_cosine", int(steps * 0.05) + 1)))
    elif cls == "late_divergence":
        at = int(steps * rng.uniform(0.15, 0.85))
        kind = _pick(rng, ("lr_jump", "nan_input"), p=(0.7, 0.3))
        factor = _log_uniform(rng, 30, 1000) if optimizer in ("adam", "adamw") else _log_uniform(rng, 30, 300)
        events.append((at, kind, float(factor)))
        clip = None
    if cls in ("explode_init", "rnn_gain", "never_learns", "lr_ramp") and schedule[0] in ("step", "sgdr"):
        schedule = ("const",)
    # Keep the run affordable: shorten it (never below 300 steps), then shrink the batch.
    if a["arch"] == "transformer":
        steps = min(steps, 2000)  # ~6 ms a step whatever the batch: 2,000 steps are already ~15 s
    work = steps * batch * _param_estimate(a) * {"rnn": 60, "transformer": 300}.get(a["arch"], 1)
    while work > MAX_WORK and batch > 8:
        batch //= 2
        work /= 2
    if work > MAX_WORK:
        steps = max(300, int(steps * MAX_WORK / work))
    evals = int(rng.integers(10, 61))
    val_every = max(1, steps // evals)
    style = _pick(rng, STYLES)
    writer = "shim" if rng.random() < 0.3 else _pick(rng, ("tensorboardX", "torch"))
    if writer == "shim":
        style = "shim"  # the shim writes the contract's default tags itself
    norm_every = int(_pick(rng, (1, 5, 10, 20, 50)))
    n_params_tensors = 2 * (a["depth"] + 1) + (10 * a["depth"] if a["arch"] == "transformer" else 0)
    # At most ~1,500 histograms per run (each is 1-10 kB): what people log is bounded the same way.
    hist_every = int(max(_pick(rng, (10, 25, 50, 100)), math.ceil(steps * n_params_tensors / 1500)))
    return Config(seed=seed, cls=cls, lr=lr, optimizer=optimizer, schedule=schedule, batch=batch, steps=steps, n_train=n_train,
                  label_noise=label_noise, clip=clip, dropout=dropout, val_every=val_every, hist_every=hist_every,
                  norm_every=norm_every, writer=writer, style=style, events=tuple(sorted(events)), **a)


def _param_estimate(a: dict) -> int:
    w, d = a["width"], a["depth"]
    if a["arch"] == "mlp":
        return 64 * w + d * w * w + 10 * w
    if a["arch"] == "cnn":
        return d * 9 * w * w + 16 * w * 10
    if a["arch"] == "rnn":
        return 4 * w * w
    return d * 12 * w * w
