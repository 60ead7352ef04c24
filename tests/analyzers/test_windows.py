"""`windows`: the shared streaming helpers give the same answer however the stream is cut."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tbmon.analyzers.windows import EpisodeState, episode_events, trailing_median, trailing_window_stats


def events_in_chunks(levels: list[int], cuts: list[int], rearm: int) -> tuple[list[int], list[int]]:
    """All alerting indices, and the final episode state, feeding ``levels`` cut at ``cuts``."""
    episode = EpisodeState()
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(levels))), len(levels)]
    out: list[int] = []
    for lo, hi in zip(bounds, bounds[1:]):
        chunk = np.asarray(levels[lo:hi], dtype=np.int64)
        out += [lo + int(i) for i in episode_events(chunk, np.arange(lo, hi), episode, rearm)]
    return out, episode.to_json()


def test_a_lower_level_after_an_escalation_does_not_let_the_episode_re_escalate() -> None:
    """Spike (warning), explosion (critical), a smaller spike, then critical again: the episode
    already reached critical, so only the first two alert, whether fed at once or point by point."""
    levels = [0, 1, 0, 2, 1, 0, 2, 0]
    assert events_in_chunks(levels, [], rearm=50)[0] == [1, 3]
    assert events_in_chunks(levels, list(range(1, len(levels))), rearm=50)[0] == [1, 3]


@settings(max_examples=300, deadline=None)
@given(
    levels=st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=1, max_size=60),
    data=st.data(),
    rearm=st.integers(1, 8),
)
def test_episode_events_do_not_depend_on_chunking(levels: list[int], data: st.DataObject, rearm: int) -> None:
    cuts = data.draw(st.lists(st.integers(1, max(len(levels) - 1, 1)), max_size=20))
    assert events_in_chunks(levels, cuts, rearm) == events_in_chunks(levels, [], rearm)


def window_stats_in_chunks(
    values: np.ndarray, cuts: list[int], forget: set[int], window: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """``trailing_window_stats`` (and ``trailing_median``, as a third row) over ``values`` cut
    at ``cuts``, as a rule feeds it: the last block carried from chunk to chunk, except before
    the chunks starting at ``forget`` (a state saved without it)."""
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(values))), len(values)]
    last = None
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        history = values[:lo]
        med, mad, last = trailing_window_stats(
            history, values[lo:hi], window, 3, offset=lo, stride=stride, last=None if lo in forget else last
        )
        out.append(np.stack([med, mad, trailing_median(history, values[lo:hi], 5)]))
    return np.concatenate(out, axis=1)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=80),
    data=st.data(),
    window=st.integers(1, 12),
    stride=st.integers(1, 5),
)
def test_window_stats_do_not_depend_on_chunking_or_on_the_carried_block(
    values: list[float], data: st.DataObject, window: int, stride: int
) -> None:
    cuts = data.draw(st.lists(st.integers(1, max(len(values) - 1, 1)), max_size=len(values)))
    forget = set(data.draw(st.lists(st.sampled_from(cuts), max_size=3))) if cuts else set()
    v = np.asarray(values)
    whole = window_stats_in_chunks(v, [], set(), window, stride)
    np.testing.assert_array_equal(window_stats_in_chunks(v, cuts, forget, window, stride), whole)
