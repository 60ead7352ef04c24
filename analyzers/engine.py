"""The engine: routes each run's batches to its rules, handles restarts, keeps resumable state.

* One rule instance per run. Rules with ``scope = "experiment"`` (overfitting) see Keras
  ``train``/``validation`` sibling runs as one experiment: both runs feed the same instance,
  their tags prefixed with the run's sub-directory (``validation/epoch_loss``) and their
  alerts reported on the parent directory (``RunBatch.experiment_dir``). The two runs have
  separate ``seq`` spaces, so such rules pair the sides by ``step``.
* A Keras train run's own view also carries its validation sibling's epoch-level loss so far, by
  step (``RunView.sibling_validation``): divergence reads the validation level beside an epoch
  jump of the training loss. The reader hands a validation run over before its train sibling.
* Restarts: when a tag's step goes back (a resume from a checkpoint rewrites the overlap),
  the batch is cut at that point and every rule forgets that tag's numeric state before the
  rest is fed. Open episodes are kept, so the overlap neither false-alarms nor re-alerts.
* ``state_dict()`` is plain JSON data: a restarted watcher that loads it resumes without
  re-alerting.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tbmon.analyzers.alerts import Alert
from tbmon.analyzers.base import Rule, RunView, Tagged
from tbmon.analyzers.config import AnalyzerConfig
from tbmon.analyzers.registry import available_rules
from tbmon.analyzers.series import HistogramSeries, RunBatch, ScalarSeries, StepLevels, seq_slice
from tbmon.analyzers.signals import VAL_LOSS, Match, SignalMatcher, epoch_level

# 9: divergence's pending spikes carry the points their jump needs (the loss's own texture).
# 6: divergence judges spikes after they recover or not, not_learning, loss_plateau's start level (issue #10).
# 5: overfitting's training level around its best. 4: loss_plateau keeps each tag's block size
# (epoch-level tags). 3: overfitting remembers the minimum it reported; loss_plateau. 2: seq-based layer choices
STATE_VERSION = 9
Series = ScalarSeries | HistogramSeries
_SEQ_MIN, _SEQ_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_TAG = operator.attrgetter("tag")
_ROUTES_KEPT = 4096  # distinct tag sets remembered (a few per run's logging pattern)
# Validation epochs kept per Keras experiment: a report looks the whole training history up (runs of
# thousands of epochs are rare); a state file keeps the latest few, which a resumed watcher's lookups need.
_SIBLING_KEPT, _SIBLING_SAVED = 4096, 16
Route = tuple[tuple[tuple[int, Match], ...], tuple[tuple[int, Match], ...]]  # (scalars, histograms): position, match


class HasBatches(Protocol):
    """A reader's answer (``PollResult``, ``ReadResult``): run batches in arrival order."""

    batches: Sequence[RunBatch]


class Engine:
    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()
        self.matcher = SignalMatcher(self.config.patterns)
        rules = available_rules()
        self._rule_classes = [(name, rules[name]) for name in self.config.rule_names()]
        self._rules: dict[str, dict[str, Rule]] = {}  # owner (run or experiment) → name → rule
        self._last_step: dict[str, dict[str, int]] = {}  # run → tag → last step seen
        self._routes: dict[tuple[Any, ...], Route] = {}  # see ``_route``
        self._validation: dict[str, StepLevels] = {}  # Keras experiment → its validation run's epoch loss

    # --- feeding ----------------------------------------------------------------------------

    def feed(self, batch: RunBatch | HasBatches) -> list[Alert]:
        """Alerts raised by this batch's points (each episode once, dated at its first step).

        Also takes what the reader returns whole (``LogdirReader.poll()``, ``read()``): anything
        with ``.batches`` is fed batch by batch, so ``engine.feed(reader.poll())`` just works.
        """
        if not isinstance(batch, RunBatch):
            return [alert for one in batch.batches for alert in self.feed(one)]
        series: list[Series] = [s for s in (*batch.scalars, *batch.histograms) if len(s)]
        if not series:
            return []
        segments = self._segments(batch.run, series)
        if len(segments) == 1:  # no restart in this batch (nearly always): every series whole
            alerts = self._feed_rules(batch, series)
            return sorted(alerts, key=lambda a: (a.step, a.run, a.kind, a.tag)) if len(alerts) > 1 else alerts
        alerts = []
        for lo, hi, restarted in segments:
            for tag in restarted:
                for owner, prefix in self._owners(batch):
                    for rule in self._rules_of(owner, batch, prefix is not None):
                        rule.reset(prefix + tag if prefix else tag)
            part = [seq_slice(s, lo, hi) for s in series]
            part = [s for s in part if len(s)]
            if part:
                alerts += self._feed_rules(batch, part)
        return sorted(alerts, key=lambda a: (a.step, a.run, a.kind, a.tag))

    def _feed_rules(self, batch: RunBatch, series: list[Series]) -> list[Alert]:
        if batch.role == "validation" and batch.experiment_dir is not None:
            self._note_validation(batch, series)
        out: list[Alert] = []
        for owner, prefix in self._owners(batch):
            view = self._view(owner, batch, series, prefix)
            for rule in self._rules_of(owner, batch, prefix is not None):
                out += rule.feed(view)
        return out

    def _owners(self, batch: RunBatch) -> list[tuple[str, str | None]]:
        """(owner, tag prefix): the run itself, plus its experiment when it is a Keras sibling."""
        owners: list[tuple[str, str | None]] = [(batch.run, None)]
        if batch.experiment_dir is not None and batch.role is not None:
            exp = batch.experiment_dir
            rel = batch.run if exp in (".", "") else batch.run[len(exp) + 1 :]
            owners.append((exp, rel + "/"))
        return owners

    def _rules_of(self, owner: str, batch: RunBatch, experiment: bool) -> list[Rule]:
        """The rule instances for this owner; experiment-scope rules live on the pair when paired."""
        paired = batch.experiment_dir is not None and batch.role is not None
        rules = self._rules.setdefault(owner, {})
        out = []
        for name, cls in self._rule_classes:
            wants_experiment = paired and cls.scope == "experiment"
            if wants_experiment != experiment:
                continue
            if name not in rules:
                rules[name] = cls(owner, self.config.rule_params(name))
            out.append(rules[name])
        return out

    def _note_validation(self, batch: RunBatch, series: list[Series]) -> None:
        """Keep a validation run's epoch-level loss (its first such tag) for its train sibling's view."""
        assert batch.experiment_dir is not None
        levels = self._validation.get(batch.experiment_dir)
        for i, match in self._route(batch.role, series)[0]:
            s = series[i]
            if match.signal == VAL_LOSS and epoch_level(s.tag) and (levels is None or levels.tag == s.tag):
                finite = np.isfinite(s.value)
                levels = (levels or StepLevels.empty(s.tag)).extended(s.step[finite], s.value[finite], _SIBLING_KEPT)
                self._validation[batch.experiment_dir] = levels
                return

    def _view(self, owner: str, batch: RunBatch, series: list[Series], prefix: str | None) -> RunView:
        scalars, histograms = self._route(batch.role, series)
        if prefix:
            return RunView(run=owner, scalars=tuple(
                Tagged(m, dataclasses.replace(series[i], tag=prefix + series[i].tag)) for i, m in scalars),
                histograms=tuple(Tagged(m, dataclasses.replace(series[i], tag=prefix + series[i].tag))
                                 for i, m in histograms))
        sibling = self._validation.get(batch.experiment_dir) if batch.role == "train" and batch.experiment_dir else None
        return RunView(run=owner, scalars=tuple([Tagged(m, series[i]) for i, m in scalars]),
                       histograms=tuple([Tagged(m, series[i]) for i, m in histograms]), sibling_validation=sibling)

    def _route(self, role: str | None, series: list[Series]) -> Route:
        """``(position, match)`` of each scalar and each histogram series some signal matches, remembered
        per set of tags: a live feed brings the same tags step after step, and classifying each of them on
        every feed was a fair share of its cost (issue 14)."""
        key = (role, tuple(map(_TAG, series)), tuple(map(type, series)))
        route = self._routes.get(key)
        if route is None:
            found: tuple[list[tuple[int, Match]], list[tuple[int, Match]]] = ([], [])
            for i, s in enumerate(series):
                is_hist = isinstance(s, HistogramSeries)
                match = self.matcher.classify(s.tag, histogram=is_hist, role=role)
                if match is not None:
                    found[is_hist].append((i, match))
            if len(self._routes) >= _ROUTES_KEPT:  # chunks that cut steps anywhere make many sets: start over
                self._routes.clear()
            route = self._routes[key] = (tuple(found[0]), tuple(found[1]))
        return route

    def _segments(self, run: str, series: list[Series]) -> list[tuple[int, int, tuple[str, ...]]]:
        """Cut the batch (by seq) where a tag's step goes back; say which tags restart where."""
        last = self._last_step.setdefault(run, {})
        cuts: dict[int, list[str]] = {}
        for s in series:
            prev = last.get(s.tag)
            steps = s.step
            first, final = (steps.item(),) * 2 if len(steps) == 1 else (int(steps[0]), int(steps[-1]))
            if prev is not None and first < prev:
                cuts.setdefault(int(s.seq[0]), []).append(s.tag)
            if len(steps) > 1 and not (len(steps) == 2 and final >= first):  # (one or two points: no diff)
                for i in (np.flatnonzero(np.diff(steps) < 0) + 1).tolist():
                    cuts.setdefault(int(s.seq[i]), []).append(s.tag)
            last[s.tag] = final
        if not cuts:
            return [(_SEQ_MIN, _SEQ_MAX, ())]
        bounds = sorted(cuts)
        lo = _SEQ_MIN
        segments: list[tuple[int, int, tuple[str, ...]]] = []
        restarted: tuple[str, ...] = ()
        for cut in bounds:
            segments.append((lo, cut, restarted))
            lo, restarted = cut, tuple(cuts[cut])
        segments.append((lo, _SEQ_MAX, restarted))
        return segments

    # --- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "rules": {owner: {n: r.state_dict() for n, r in rules.items()} for owner, rules in self._rules.items()},
            "last_step": self._last_step,
            "validation": {exp: [v.tag, v.step[-_SIBLING_SAVED:].tolist(), v.value[-_SIBLING_SAVED:].tolist()]
                           for exp, v in self._validation.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"analyzer state version {state.get('version')!r} is not {STATE_VERSION}; start fresh")
        classes = dict(self._rule_classes)
        self._last_step = {run: dict(tags) for run, tags in state["last_step"].items()}
        self._validation = {exp: StepLevels(tag, np.asarray(step, dtype=np.int64), np.asarray(value, dtype=float))
                            for exp, (tag, step, value) in state.get("validation", {}).items()}
        self._rules = {}
        for owner, rules in state["rules"].items():
            for name, rule_state in rules.items():
                if name not in classes:  # rule disabled since: its state is dropped
                    continue
                rule = classes[name](owner, self.config.rule_params(name))
                rule.load_state_dict(rule_state)
                self._rules.setdefault(owner, {})[name] = rule

    def episodes(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Per ``(run, kind, tag)``, its latest episode: how often the condition held, until which step."""
        out = {}
        for owner, rules in self._rules.items():
            for rule in rules.values():
                for ep in getattr(rule, "episodes", lambda: [])():
                    out[(owner, ep["kind"], ep["tag"])] = ep
        return out
