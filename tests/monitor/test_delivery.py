"""The delivery ledger and the failure throttle: pure bookkeeping, on a clock the test moves."""

from __future__ import annotations

from tbmon.monitor.delivery import OUTPUT, RETRY_FIRST, RETRY_MAX, DeliveryLedger, sink_id
from tbmon.monitor.notify import Throttle, visible

ALERT = ("/logs", ("exp1", "divergence", "train/loss", 845))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_new_alert_is_owed_by_every_sink_until_each_confirms() -> None:
    hook = sink_id("webhook", "https://hooks.example/T0/secret")
    ledger = DeliveryLedger([OUTPUT, hook], clock=Clock())
    ledger.expect(ALERT)
    assert sorted(ledger.take_due()) == [(ALERT, OUTPUT), (ALERT, hook)]
    assert ledger.take_due() == []  # in flight: not handed out twice
    ledger.done(ALERT, OUTPUT)
    assert ledger.pending(ALERT) == [hook] and ledger.outstanding() == 1
    ledger.done(ALERT, hook)
    assert ledger.pending(ALERT) == [] and ledger.outstanding() == 0
    assert "secret" not in hook


def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    clock = Clock()
    ledger = DeliveryLedger([OUTPUT], clock=clock)
    ledger.expect(ALERT)
    waits = []
    for _ in range(12):
        assert ledger.take_due() == [(ALERT, OUTPUT)]
        ledger.failed(ALERT, OUTPUT)
        waits.append(ledger.next_due_in())
        assert ledger.take_due() == []  # not before its time
        clock.now += waits[-1]
    assert waits[:3] == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST] and waits[-1] == RETRY_MAX
    assert ledger.pending(ALERT) == [OUTPUT]  # never dropped


def test_restore_keeps_only_sinks_still_configured() -> None:
    ledger = DeliveryLedger([OUTPUT, "command:abc"], clock=Clock())
    ledger.restore(ALERT, ["webhook:gone", "command:abc"])
    assert ledger.pending(ALERT) == ["command:abc"]


def test_throttle_passes_the_first_then_one_per_period_with_a_count() -> None:
    clock, said = Clock(), []
    throttle = Throttle(said.append, every=60, clock=clock)
    for i in range(50):
        throttle(f"failure {i}")
    clock.now += 61
    throttle("failure 50")
    throttle("failure 51")
    throttle.flush()
    assert said == ["failure 0", "failure 50 (49 more failures held back since the last such line)", "... and 1 more failure like the last one"]


def test_visible_escapes_control_characters_and_cuts() -> None:
    assert visible("\x1b[2J\x07ok") == "\\x1b[2J\\x07ok"
    shown = visible("A" * 5000, limit=80)
    assert len(shown) == 80 and shown.endswith("…")
