"""Build the sampled corpus: train each seed's configuration once (parallel workers), label it from its data.

Runs live in ``root/<name>/``; a run is rebuilt only when its configuration or the code that decides its
event files changed (a ``DONE`` file holds that key), so an interrupted build resumes where it stopped.
Labels are cached beside the run (``labels.json``) under the labeller's own code hash.

The split is fixed once, by seed: even seeds are the development part (rules may be tuned on it and its
runs read one by one), odd seeds are the locked part (scored in aggregate only). ``CI_SAMPLE`` is a fixed
subset of the locked part small enough to train inside the test suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .space import Config, draw

HERE = Path(__file__).parent
REPO = HERE.parents[1]
# space.py is not here: a run's configuration (its repr is in the key) is all it contributes.
_TRAINING_SOURCES = [HERE / "run.py", *(REPO / "tests" / "scenarios" / n for n in
                     ("data.py", "models.py", "styles.py", "training.py"))]
# The shim modules that decide what a shim-written run holds: a shim change rebuilds those runs only (new shim
# modules such as framework callbacks rebuild none).
_SHIM_SOURCES = [REPO / "trainer_shim" / n for n in ("__init__.py", "distributed.py", "shim.py", "stats.py", "writer.py")]
_LABEL_SOURCES = [HERE / "labels.py", REPO / "tests" / "scenarios" / "labels.py"]

SEEDS = range(400)
LOCKED = tuple(s for s in SEEDS if s % 2 == 1)
# The development part grew once (seeds 400-798, even) after the first locked score, to find misses
# without reading the locked part; the locked part never grows.
_FIRST_DEVELOPMENT = tuple(s for s in range(800) if s % 2 == 0)


def _drawn_batch(first: int, classes: tuple[str, ...], wanted: int, healthy: float,
                 where: Callable[[Config], bool] = lambda cfg: True) -> tuple[int, ...]:
    """The even seeds from ``first`` on whose *drawn* class (decided before training, never the outcome) is
    one of ``classes`` and whose drawn configuration meets ``where``, until there are ``wanted`` of them, and the
    first ``healthy`` healthy-class seeds of the same range (a false alarm weighs as much as a miss). Drawn, not
    picked: no seed is chosen by its data."""
    seeds, weak, calm, seed = [], 0, 0, first
    while weak < wanted:
        cfg = draw(seed)
        cls = cfg.cls
        if cls in classes and where(cfg):
            weak += 1
            seeds.append(seed)
        elif cls == "healthy" and calm < healthy:
            calm += 1
            seeds.append(seed)
        seed += 2
    return tuple(seeds)


# A third batch (issue 10, third round), weighted to the kinds whose development gains did not carry over
# to the locked part: 120 drawn explode_init / rnn_gain / lr_ramp / never_learns seeds from 800 up, and
# every healthy-class seed of that range.
_THIRD = _drawn_batch(800, ("explode_init", "rnn_gain", "lr_ramp", "never_learns"), 120, healthy=float("inf"))
# A fourth batch (issue 10, fifth round), drawn the same way after the third: an out-of-sample check of the
# fourth-round rules on the drawn classes whose locked-part misses the development part no longer showed,
# 60 of them, and the first 30 healthy-class seeds of that range.
_FOURTH = _drawn_batch(_THIRD[-1] + 2, ("explode_init", "lr_too_high", "never_learns"), 60, healthy=30)
# A fifth batch (issue 10, seventh round), drawn the same way after the fourth and scored before any rule
# saw it: the drawn classes behind the sixth round's locked-part misses (counted per class, never read).
_FIFTH = _drawn_batch(_FOURTH[-1] + 2, ("explode_init", "lr_too_high", "never_learns", "late_divergence"), 120,
                      healthy=40)
# A sixth (same round, after the fifth's rule changes): another out-of-sample check on the same classes.
_SIXTH = _drawn_batch(_FIFTH[-1] + 2, ("explode_init", "lr_too_high", "never_learns", "late_divergence"), 100,
                      healthy=30)
# A seventh (issue 10, eighth round), drawn the same way after the sixth and scored on the seventh round's final
# rules before any run of it was read: the same four classes, 200 of them, and 50 healthy-class seeds.
_SEVENTH = _drawn_batch(_SIXTH[-1] + 2, ("explode_init", "lr_too_high", "never_learns", "late_divergence"), 200,
                        healthy=50)
# An eighth (same round, after the seventh's rule change), weighted to healthy runs (a false alarm is the
# costlier error): 120 of the same four classes and 100 healthy-class seeds.
_EIGHTH = _drawn_batch(_SEVENTH[-1] + 2, ("explode_init", "lr_too_high", "never_learns", "late_divergence"), 120,
                       healthy=100)
# A ninth (issue 10, ninth round), drawn after the eighth and scored on the rules and labels of its day before any
# run of it was read: the classes behind the locked part's remaining misses (overfitting on explode_init and
# late_divergence runs, exploding gradients on explode_init and lr_too_high runs) and the overfit class, 160 of
# them, and 60 healthy-class seeds.
_NINTH = _drawn_batch(_EIGHTH[-1] + 2, ("explode_init", "lr_too_high", "late_divergence", "overfit"), 160, healthy=60)
# A tenth (issue 10, tenth round), drawn after the ninth and scored on the ninth round's final rules before any run
# of it was read: the three drawn classes behind the locked part's four remaining misses, 170 of them, and 50
# healthy-class seeds.
_TENTH = _drawn_batch(_NINTH[-1] + 2, ("explode_init", "lr_too_high", "late_divergence"), 170, healthy=50)
# An eleventh (issue 10, eleventh round), drawn after the tenth and scored on the tenth round's rules (with the
# divergence texture change of this round) before any run of it was read: the same three classes, 150 of them,
# and 70 healthy-class seeds (a false alarm is the costlier error).
_ELEVENTH = _drawn_batch(_TENTH[-1] + 2, ("explode_init", "lr_too_high", "late_divergence"), 150, healthy=70)
# A twelfth (issue 10, twelfth round), drawn after the eleventh and scored on the rules of its day (the eleventh
# round's, with the overfitting episode that a clearly lower minimum ends) before any run of it was read: the
# classes behind the locked part's remaining misses and the overfit class, 100 of them, and 60 healthy-class seeds.
_TWELFTH = _drawn_batch(_ELEVENTH[-1] + 2, ("explode_init", "lr_too_high", "late_divergence", "overfit"), 100,
                        healthy=60)
# A thirteenth (issue 10, thirteenth round), drawn after the twelfth and scored on the twelfth round's final rules
# before any run of it was read: the same four classes, 120 of them, and 50 healthy-class seeds.
_THIRTEENTH = _drawn_batch(_TWELFTH[-1] + 2, ("explode_init", "lr_too_high", "late_divergence", "overfit"), 120,
                           healthy=50)
# A fourteenth (issue 10, fourteenth round), drawn after the thirteenth and scored on the thirteenth round's final
# rules before any run of it was read: the same four classes, 120 of them, and 50 healthy-class seeds.
_FOURTEENTH = _drawn_batch(_THIRTEENTH[-1] + 2, ("explode_init", "lr_too_high", "late_divergence", "overfit"), 120,
                           healthy=50)
# A fifteenth (issue 10, fifteenth round), drawn after the fourteenth and scored on the fourteenth round's final
# rules before any run of it was read: the drawn classes behind the locked part's four remaining misses as built on
# an AMD EPYC (divergence on lr_too_high, overfitting on late_divergence, vanishing on lr_ramp, exploding on
# explode_init; counted per class, never read), 120 of them, and 50 healthy-class seeds.
_FIFTEENTH = _drawn_batch(_FOURTEENTH[-1] + 2, ("explode_init", "lr_too_high", "lr_ramp", "late_divergence"), 120,
                          healthy=50)
# A sixteenth (same round, drawn after the fifteenth and scored on its rules before any run of it was read): the lr
# ramps alone, the class behind the locked part's vanishing miss (an alert before the labelled onset, counted, never
# read) and the fifteenth batch's early divergence alerts, drawn least of all (6 %): 60 of them, 20 healthy-class seeds.
_SIXTEENTH = _drawn_batch(_FIFTEENTH[-1] + 2, ("lr_ramp",), 60, healthy=20)
# A seventeenth (same round, drawn after the sixteenth and scored on c23133a's rules, whose change counts the
# "back at the untrained level" windows in steps, before any run of it was read): an out-of-sample check weighted to
# healthy runs, 60 drawn lr_too_high / lr_ramp / late_divergence / overfit seeds and the healthy-class seeds of
# that range (55; at most 60).
_SEVENTEENTH = _drawn_batch(_SIXTEENTH[-1] + 2, ("lr_too_high", "lr_ramp", "late_divergence", "overfit"), 60,
                            healthy=60)
# An eighteenth (issue 10, sixteenth round), drawn after the seventeenth and scored before any run of it was read on
# the rules of its day (a jump waits 1 % of the points before it; overfitting's noise from the first differences
# since the best): an out-of-sample check of both, 60 drawn overfit / late_divergence / lr_too_high / explode_init
# seeds (overfitting's positives, jumps, and the classes of the locked part's misses) and 60 healthy-class seeds.
_EIGHTEENTH = _drawn_batch(_SEVENTEENTH[-1] + 2, ("overfit", "late_divergence", "lr_too_high", "explode_init"), 60,
                           healthy=60)
# A nineteenth (issue 10, seventeenth round), drawn after the eighteenth and scored on ef5bb8f's rules before any run
# of it was read: the three drawn classes behind the locked part's remaining misses (overfitting on late_divergence,
# vanishing on lr_ramp, exploding on explode_init; counted per class, never read), 90 of them, and 40 healthy-class
# seeds.
_NINETEENTH = _drawn_batch(_EIGHTEENTH[-1] + 2, ("late_divergence", "lr_ramp", "explode_init"), 90, healthy=40)
# A twentieth (same round), drawn after the nineteenth and scored before any run of it was read on the round's
# rules (vanishing's streak covers 1 % of the gradient logs; the loss-scale gate at 50x): an out-of-sample check of
# both, weighted to healthy runs, 70 drawn explode_init / rnn_gain / lr_ramp / never_learns seeds and 70
# healthy-class seeds.
_TWENTIETH = _drawn_batch(_NINETEENTH[-1] + 2, ("explode_init", "rnn_gain", "lr_ramp", "never_learns"), 70,
                          healthy=70)
# A twenty-first (issue 10, eighteenth round), drawn after the twentieth and scored on f730797's rules before any run
# of it was read: again the three drawn classes behind the locked part's remaining misses, 100 of them, and 30
# healthy-class seeds.
_TWENTYFIRST = _drawn_batch(_TWENTIETH[-1] + 2, ("late_divergence", "lr_ramp", "explode_init"), 100, healthy=30)
# A twenty-second (same round, no rule changed after the twenty-first), drawn after it and scored before it was read:
# false alarms first, the healthy-class seeds of its range (74; at most 100), and 40 drawn overfit / late_divergence
# seeds (overfitting's positives).
_TWENTYSECOND = _drawn_batch(_TWENTYFIRST[-1] + 2, ("overfit", "late_divergence"), 40, healthy=100)
# A twenty-third (issue 10, nineteenth round), drawn after the twenty-second and scored on a8565c6's rules before any
# run of it was read: the three drawn classes behind the locked part's remaining misses (overfitting on late_divergence,
# vanishing on lr_ramp, exploding on explode_init; counted per class, never read), 100 of them, and 40 healthy-class
# seeds.
_TWENTYTHIRD = _drawn_batch(_TWENTYSECOND[-1] + 2, ("late_divergence", "lr_ramp", "explode_init"), 100, healthy=40)
# A twenty-fourth (same round, after the twenty-third's dead_units change), drawn after it and scored before it was
# read: false alarms first, the healthy-class seeds of its range (54; at most 80), and 50 drawn overfit /
# late_divergence / explode_init seeds (overfitting's positives and the draws whose healthy runs held the round's
# false alarm).
_TWENTYFOURTH = _drawn_batch(_TWENTYTHIRD[-1] + 2, ("overfit", "late_divergence", "explode_init"), 50, healthy=80)
# A twenty-fifth (issue 10, twentieth round), drawn after the twenty-fourth and scored before any run of it was read on
# the round's rules (an epoch jump is read against the validation level, a Keras train run's from its sibling): 70
# drawn late_divergence / lr_ramp / explode_init / overfit seeds (the classes of the locked part's misses and
# overfitting's positives) and the healthy-class seeds of that range (63; at most 70).
_TWENTYFIFTH = _drawn_batch(_TWENTYFOURTH[-1] + 2, ("late_divergence", "lr_ramp", "explode_init", "overfit"), 70,
                            healthy=70)
# A twenty-sixth (same round, after all of its changes), drawn after the twenty-fifth and scored before any run of it
# was read: false alarms first, the healthy-class seeds of its range (62; at most 80), and 50 drawn overfit /
# late_divergence / lr_ramp / explode_init seeds.
_TWENTYSIXTH = _drawn_batch(_TWENTYFIFTH[-1] + 2, ("overfit", "late_divergence", "lr_ramp", "explode_init"), 50,
                            healthy=80)
# A twenty-seventh (issue 10, twenty-first round), drawn after the twenty-sixth and scored on a70edf8's rules before any
# run of it was read: false alarms first, the healthy-class seeds of its range (at most 80), and 50 drawn lr_ramp /
# explode_init / late_divergence / lr_too_high seeds (the drawn classes behind the locked part's four remaining misses,
# counted per class, never read).
_TWENTYSEVENTH = _drawn_batch(_TWENTYSIXTH[-1] + 2, ("lr_ramp", "explode_init", "late_divergence", "lr_too_high"), 50,
                              healthy=80)
# A twenty-eighth (issue 10, twenty-second round), drawn after the twenty-seventh and scored on bbc528d's rules before
# any run of it was read: false alarms first, the healthy-class seeds of its range (at most 60), and 60 drawn
# explode_init / late_divergence seeds (the drawn classes of the locked part's two misses that keep overfitting and
# exploding gradients below their floors, counted per class, never read).
_TWENTYEIGHTH = _drawn_batch(_TWENTYSEVENTH[-1] + 2, ("explode_init", "late_divergence"), 60, healthy=60)
# A twenty-ninth (same round, after its changes), drawn after the twenty-eighth and scored on 724c6ac's rules before
# any run of it was read: false alarms first, the healthy-class seeds of its range (at most 40), and 60 drawn
# explode_init / late_divergence seeds.
_TWENTYNINTH = _drawn_batch(_TWENTYEIGHTH[-1] + 2, ("explode_init", "late_divergence"), 60, healthy=40)
# A thirtieth (same round, after its changes), drawn after the twenty-ninth and scored on b33364b's rules before any
# run of it was read: a false-alarm count first, the healthy-class seeds of its range (at most 100), and 35 drawn
# overfit seeds (overfitting's positives: the round's two warned healthy runs were warned of overfitting).
_THIRTIETH = _drawn_batch(_TWENTYNINTH[-1] + 2, ("overfit",), 35, healthy=100)
# A thirty-first (issue 10, twenty-third round), drawn after the thirtieth and scored on 1ff25e2's rules before any
# run of it was read: 120 drawn explode_init seeds (the class of two of the locked part's three remaining misses,
# exploding and overfitting) and the first 20 healthy-class seeds of its range.
_THIRTYFIRST = _drawn_batch(_THIRTIETH[-1] + 2, ("explode_init",), 120, healthy=20)
# A thirty-second (same round), drawn after the thirty-first and scored on 4315001's rules before any run of it was
# read: 140 drawn explode_init / late_divergence seeds (the classes of the locked part's three remaining misses) and
# the first 20 healthy-class seeds of its range.
_THIRTYSECOND = _drawn_batch(_THIRTYFIRST[-1] + 2, ("explode_init", "late_divergence"), 140, healthy=20)
# A thirty-third (same round), drawn the same way after the thirty-second and scored on 4315001's rules before any
# run of it was read (the thirty-second's misses were of the known HF kind, so no rule changed after it).
_THIRTYTHIRD = _drawn_batch(_THIRTYSECOND[-1] + 2, ("explode_init", "late_divergence"), 140, healthy=20)
# A thirty-fourth (same round, after its changes), drawn after the thirty-third and scored on 81e39ee's rules and
# labeller before any run of it was read: a false-alarm count first, the healthy-class seeds of its range (at most 100;
# 62 came before the 40th drawn explode_init / overfit seed, where the batch ends).
_THIRTYFOURTH = _drawn_batch(_THIRTYTHIRD[-1] + 2, ("explode_init", "overfit"), 40, healthy=100)
# A thirty-fifth (same round), drawn after the thirty-fourth and scored on e19dfc7's rules and labeller before any
# run of it was read: 100 drawn explode_init / late_divergence seeds and the first 40 healthy-class seeds of its range.
_THIRTYFIFTH = _drawn_batch(_THIRTYFOURTH[-1] + 2, ("explode_init", "late_divergence"), 100, healthy=40)
# A thirty-sixth (issue 10, twenty-fourth round), drawn after the thirty-fifth and scored on b25e261's rules and
# labeller before any run of it was read: a false-alarm count weighted to validation curves, 60 drawn overfit /
# explode_init seeds and the first 80 healthy-class seeds of its range.
_THIRTYSIXTH = _drawn_batch(_THIRTYFIFTH[-1] + 2, ("overfit", "explode_init"), 60, healthy=80)
# A thirty-seventh (issue 10, twenty-fifth round), drawn after the thirty-sixth and scored on this round's rules and
# labeller before any run of it was read: 80 drawn explode_init / overfit seeds (the classes of the locked part's two
# remaining misses) and the first 60 healthy-class seeds of its range.
_THIRTYSEVENTH = _drawn_batch(_THIRTYSIXTH[-1] + 2, ("explode_init", "overfit"), 80, healthy=60)
# A thirty-eighth (issue 10, twenty-sixth round), drawn after the thirty-seventh and scored on this round's rules and
# labeller before any run of it was read: 100 drawn explode_init seeds (the class of both of the locked part's
# remaining misses) and the first 40 healthy-class seeds of its range.
_THIRTYEIGHTH = _drawn_batch(_THIRTYSEVENTH[-1] + 2, ("explode_init",), 100, healthy=40)
# A thirty-ninth (issue 10, twenty-seventh round), drawn after the thirty-eighth and scored on this round's rules and
# labeller before any run of it was read: 100 drawn explode_init seeds whose drawn net is a CNN trained >= 1,400
# steps (by configuration, not outcome: six of the seven overfitting runs among the 508 explode_init development runs
# built here are such nets, as are the large-init nets found latest: s13686, s23780, s30734) and the first 40
# healthy-class seeds of its range.
_THIRTYNINTH = _drawn_batch(_THIRTYEIGHTH[-1] + 2, ("explode_init",), 100, healthy=40,
                            where=lambda cfg: cfg.arch == "cnn" and cfg.steps >= 1400)
# A fortieth (same round, after its changes), drawn the same way after the thirty-ninth and scored on d35234b's rules
# and labeller before any run of it was read: 60 such seeds and the first 20 healthy-class seeds of its range.
_FORTIETH = _drawn_batch(_THIRTYNINTH[-1] + 2, ("explode_init",), 60, healthy=20,
                         where=lambda cfg: cfg.arch == "cnn" and cfg.steps >= 1400)
# A forty-first (issue 10, twenty-eighth round), drawn the same way after the fortieth and scored on 2ccba59's rules and
# labeller (the twenty-seventh round's) before any run of it was read, on a machine none of the earlier batches were
# built on: 80 such seeds and the first 40 healthy-class seeds of its range.
_FORTYFIRST = _drawn_batch(_FORTIETH[-1] + 2, ("explode_init",), 80, healthy=40,
                           where=lambda cfg: cfg.arch == "cnn" and cfg.steps >= 1400)
# A forty-second (same round), drawn after the forty-first and scored on the same rules before any run of it was read:
# 60 drawn late_divergence / lr_too_high seeds (the drawn classes of the misses the locked part's build on this
# machine added, counted per class, never read) and the first 20 healthy-class seeds of its range.
_FORTYSECOND = _drawn_batch(_FORTYFIRST[-1] + 2, ("late_divergence", "lr_too_high"), 60, healthy=20)
# The development part by batch, in the order drawn ("first" holds the first two rounds' seeds 0-798): a batch is
# scored on its own (bench/sampled_quality.py --batch) before any rule change it prompts.
DEVELOPMENT_BATCHES = {"first": _FIRST_DEVELOPMENT, "third": _THIRD, "fourth": _FOURTH, "fifth": _FIFTH,
                       "sixth": _SIXTH, "seventh": _SEVENTH, "eighth": _EIGHTH, "ninth": _NINTH,
                       "tenth": _TENTH, "eleventh": _ELEVENTH, "twelfth": _TWELFTH,
                       "thirteenth": _THIRTEENTH, "fourteenth": _FOURTEENTH,
                       "fifteenth": _FIFTEENTH, "sixteenth": _SIXTEENTH,
                       "seventeenth": _SEVENTEENTH, "eighteenth": _EIGHTEENTH,
                       "nineteenth": _NINETEENTH, "twentieth": _TWENTIETH,
                       "twentyfirst": _TWENTYFIRST, "twentysecond": _TWENTYSECOND,
                       "twentythird": _TWENTYTHIRD, "twentyfourth": _TWENTYFOURTH,
                       "twentyfifth": _TWENTYFIFTH, "twentysixth": _TWENTYSIXTH,
                       "twentyseventh": _TWENTYSEVENTH, "twentyeighth": _TWENTYEIGHTH,
                       "twentyninth": _TWENTYNINTH, "thirtieth": _THIRTIETH,
                       "thirtyfirst": _THIRTYFIRST, "thirtysecond": _THIRTYSECOND,
                       "thirtythird": _THIRTYTHIRD, "thirtyfourth": _THIRTYFOURTH,
                       "thirtyfifth": _THIRTYFIFTH, "thirtysixth": _THIRTYSIXTH,
                       "thirtyseventh": _THIRTYSEVENTH, "thirtyeighth": _THIRTYEIGHTH,
                       "thirtyninth": _THIRTYNINTH, "fortieth": _FORTIETH, "fortyfirst": _FORTYFIRST,
                       "fortysecond": _FORTYSECOND}
DEVELOPMENT = tuple(s for batch in DEVELOPMENT_BATCHES.values() for s in batch)
CI_SAMPLE = tuple(s for s in LOCKED if s % 8 == 1)  # 50 locked runs, trained by the test suite
CI_CACHE = REPO / ".pytest_cache" / "tbmon-sampled-locked"  # where the test suite (and the bench's ci part) build it


def _digest(paths: list[Path], extra: str = "") -> str:
    import torch

    h = hashlib.sha256((torch.__version__ + extra).encode())
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_key(cfg: Config) -> str:
    return _digest(_TRAINING_SOURCES + (_SHIM_SOURCES if cfg.writer == "shim" else []), repr(cfg))


def label_key() -> str:
    return _digest(_LABEL_SOURCES)


@dataclass(frozen=True)
class Sample:
    """One sampled run with its data-derived labels (the shape `tests.scenarios.scoring` scores)."""

    config: Config
    path: Path
    onsets: dict[str, int]  # kind -> onset step, for every kind the data shows
    borderline: tuple[str, ...]  # why a run without labels is not clean enough to count as healthy
    run_length: int

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self.onsets))

    @property
    def scenario(self) -> "Sample":  # scoring reads `.scenario.name` / `.scenario.kinds`
        return self


def _train_one(cfg: Config, path: str, key: str) -> str:
    from .run import train

    root = Path(path)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(cfg, root)
    (root / "DONE").write_text(key)
    return cfg.name


def _label_one(cfg: Config, path: str, key: str) -> dict:
    from .labels import label

    found = label(cfg, Path(path))
    (Path(path) / "labels.json").write_text(json.dumps({"key": key, **found}))
    return found


def train_all(root: Path, seeds: tuple[int, ...], workers: int | None = None,
              progress: Callable[[str], None] | None = None) -> list[Config]:
    """Train every seed whose run under ``root`` is missing or stale; returns the configurations."""
    root.mkdir(parents=True, exist_ok=True)
    configs = [draw(s) for s in seeds]
    todo = [c for c in configs if not _done(root / c.name, run_key(c))]
    if todo:
        with ProcessPoolExecutor(_workers(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train_one, c, str(root / c.name), run_key(c)) for c in todo]
            for n, f in enumerate(as_completed(futures), 1):
                name = f.result()
                if progress:
                    progress(f"trained {name} ({n}/{len(todo)})")
    return configs


def build(root: Path, seeds: tuple[int, ...], workers: int | None = None,
          progress: Callable[[str], None] | None = None) -> list[Sample]:
    """Train (where needed) and label every seed under ``root``; returns them in seed order."""
    configs = train_all(root, seeds, workers, progress)
    lkey = label_key()
    labels: dict[str, dict] = {}
    unlabelled = []
    for c in configs:
        cached = root / c.name / "labels.json"
        data = json.loads(cached.read_text()) if cached.exists() else {}
        if data.get("key") == lkey:
            labels[c.name] = data
        else:
            unlabelled.append(c)
    if unlabelled:
        with ProcessPoolExecutor(_workers(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_label_one, c, str(root / c.name), lkey): c for c in unlabelled}
            for f in as_completed(futures):
                labels[futures[f].name] = f.result()
    return [Sample(c, root / c.name, {k: int(v) for k, v in labels[c.name]["onsets"].items()},
                   tuple(labels[c.name]["borderline"]), int(labels[c.name]["run_length"])) for c in configs]


def _workers(asked: int | None) -> int:
    return asked or max(1, min(len(os.sched_getaffinity(0)), 8))


def _done(path: Path, key: str) -> bool:
    marker = path / "DONE"
    return marker.exists() and marker.read_text() == key
