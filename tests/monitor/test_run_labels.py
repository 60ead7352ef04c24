"""Run names fit to a dashboard column: common prefix dropped, middle elided, runs kept apart (issue 11 item 4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from tbmon.monitor.run_labels import common_prefix, fit_labels

LIGHTNING = [
    "imagenet/sweep/2024-06-01_09-12-44/lightning_logs/version_0",
    "imagenet/sweep/2024-06-01_09-12-44/lightning_logs/version_1",
    "imagenet/sweep/2024-06-02_17-40-03/lightning_logs/version_0",
    "imagenet/sweep/2024-06-02_17-40-03/lightning_logs/version_1",
]


def test_common_prefix_is_whole_directories_never_a_whole_name() -> None:
    assert common_prefix(LIGHTNING) == "imagenet/sweep/"
    assert common_prefix(["a/b/run1", "a/b/run2"]) == "a/b/"
    assert common_prefix(["a/b", "a/b/c"]) == "a/"  # "a/b" keeps its last component
    assert common_prefix(["abc/x", "abd/y"]) == ""  # shared characters are not a shared directory
    assert common_prefix(["only/one/run"]) == ""  # nothing to tell apart: the name stays whole
    assert common_prefix([".", "x"]) == ""


def test_fitted_names_keep_head_and_distinguishing_tail() -> None:
    names = [n[len("imagenet/sweep/") :] for n in LIGHTNING]
    fitted = fit_labels(names, 24)
    assert fitted == [
        "2024-06-01_09…/version_0",
        "2024-06-01_09…/version_1",
        "2024-06-02_17…/version_0",
        "2024-06-02_17…/version_1",
    ]
    assert fit_labels(names, 60) == names  # room enough: untouched


def test_names_that_differ_only_near_the_start_move_the_cut_until_they_differ() -> None:
    names = ["seed1_" + "x" * 40 + "/run", "seed2_" + "x" * 40 + "/run"]
    fitted = fit_labels(names, 12)
    assert len(set(fitted)) == 2 and all(cell_len(f) <= 12 for f in fitted), fitted
    assert fitted[0].startswith("seed1") and fitted[1].startswith("seed2")


def test_names_that_differ_only_at_the_end_keep_the_end() -> None:
    names = ["a" * 50 + "_lr0.1", "a" * 50 + "_lr0.01"]
    fitted = fit_labels(names, 10)
    assert len(set(fitted)) == 2 and fitted == ["aaa…_lr0.1", "aaa…lr0.01"]  # a third of the width stays for the head


def test_wide_characters_count_as_two_cells() -> None:
    (fitted,) = fit_labels(["実験/" + "学習率" * 10 + "/版本_3"], 16)
    assert cell_len(fitted) <= 16 and fitted.endswith("/版本_3") and "…" in fitted


@given(
    st.lists(st.text(alphabet="ab/_0123456789", min_size=1, max_size=40), min_size=1, max_size=12, unique=True),
    st.integers(min_value=2, max_value=40),
)
def test_fitted_names_always_fit_and_short_ones_stay_whole(names: list[str], width: int) -> None:
    fitted = fit_labels(names, width)
    assert all(cell_len(f) <= width for f in fitted)
    assert all(f == n for f, n in zip(fitted, names) if cell_len(n) <= width)


def test_a_sweep_of_many_nested_runs_stays_distinct_at_20_cells() -> None:
    names = [
        f"2024-06-{day:02d}_{hour:02d}-00-00/lightning_logs/version_{version}"
        for day in (1, 2, 3) for hour in (9, 17) for version in range(5)
    ]  # fmt: skip
    fitted = fit_labels(names, 20)
    assert len(set(fitted)) == len(names), fitted
    assert all(cell_len(f) <= 20 for f in fitted)
