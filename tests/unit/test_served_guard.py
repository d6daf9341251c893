"""The served-model guard's decisions over a stream of right/wrong answers."""

from __future__ import annotations

import pytest

from streamlearn.core.labels.guard import GuardAction, ServedGuard, wilson_upper
from streamlearn.core.labels.settings import GuardSettings

SETTINGS = GuardSettings(enabled=True, window=20, margin=0.05, confirm_joins=20, max_hold_joins=60)


def feed(guard: ServedGuard, pattern: list[bool], times: int) -> list[GuardAction]:
    return [guard.judge(right).action for _ in range(times) for right in pattern]


def test_wilson_upper_bound() -> None:
    assert wilson_upper(0, 0) == 1.0
    assert wilson_upper(10, 10) == pytest.approx(1.0)
    assert wilson_upper(5, 10) == pytest.approx(0.7634, abs=1e-4)
    assert wilson_upper(0, 100) == pytest.approx(0.0370, abs=1e-4)


def test_healthy_answers_capture_and_confirm_and_never_roll_back() -> None:
    guard = ServedGuard(SETTINGS)
    actions = feed(guard, [True, True, True, False], 50)  # 75% right throughout
    assert GuardAction.ROLLBACK not in actions
    captures = [i for i, a in enumerate(actions) if a is GuardAction.CAPTURE]
    assert captures == list(range(19, 200, 20))  # every confirm_joins joins
    assert guard.has_good and guard.good_level == 0.75


def test_a_collapse_rolls_back_holds_and_releases_when_accuracy_is_back() -> None:
    guard = ServedGuard(SETTINGS)
    feed(guard, [True], 40)  # two captures: the first state is confirmed good at 100%
    assert guard.good_level == 1.0
    actions = feed(guard, [False], 30)
    rollback = actions.index(GuardAction.ROLLBACK)
    # Against a good level of 100%, 3 misses in the last 20 (upper bound 0.948) are damage.
    assert rollback == 2
    assert set(actions[rollback + 1 :]) == {GuardAction.HOLD}
    back = feed(guard, [True], 25)
    # Back within the margin once 19 of the last 20 are right (0.95 >= 1.0 - 0.05).
    assert back.index(GuardAction.RELEASE) == 18
    assert not guard.holding and guard.good_level == 1.0


def test_a_lasting_change_is_released_after_max_hold_joins_and_forgets_the_level() -> None:
    guard = ServedGuard(SETTINGS)
    feed(guard, [True], 40)
    actions = feed(guard, [False], 100)
    rollback = actions.index(GuardAction.ROLLBACK)
    release = actions.index(GuardAction.RELEASE)
    assert release - rollback == SETTINGS.max_hold_joins
    assert not guard.has_good and guard.good_level is None
    assert GuardAction.ROLLBACK not in actions[release:]  # no level to fall below
