"""The feedback schedule steps, holds and rolls back as validation feedback says."""
from __future__ import annotations

import itertools
import math

import pytest

from kerasprune.errors import ConfigError
from kerasprune.sparsity.schedules import FeedbackSchedule, FeedbackState

REF = 0.99


def _run(schedule, metrics, total=None):
    return [schedule.update(e, m, total) for e, m in enumerate(metrics)]


def test_plan_defaults_step_ten_points_every_five_epochs_when_within_tolerance():
    schedule = FeedbackSchedule(mode="guard")  # 20% -> 80%, +10% every 5 epochs
    decisions = _run(schedule, [REF] + [REF - 0.004] * 40)  # inside tolerance, not comfortably
    steps = [(d.epoch, d.sparsity) for d in decisions if d.action == "step"]
    assert steps == [(0, 0.2), (5, 0.3), (10, 0.4), (15, 0.5), (20, 0.6), (25, 0.7), (30, 0.8)]
    assert decisions[-1].action == "done"


def test_comfortably_inside_tolerance_it_steps_early():
    decisions = _run(FeedbackSchedule(every=5), [REF] * 8)
    assert [d.sparsity for d in decisions if d.action == "step"] == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_a_drop_is_held_then_rolled_back_with_a_smaller_step():
    schedule = FeedbackSchedule(every=1, recovery_epochs=2, mode="guard")
    decisions = _run(schedule, [REF, REF, REF - 0.02, REF - 0.02, REF - 0.02, REF])
    assert [d.action for d in decisions] == ["step", "step", "hold", "hold", "rollback", "step"]
    assert decisions[4].sparsity == pytest.approx(0.2)  # back to the level before the step
    assert decisions[5].sparsity == pytest.approx(0.25)  # retried with half the step
    assert schedule.state.rollbacks == 1


def test_recovery_within_the_hold_keeps_the_level():
    decisions = _run(FeedbackSchedule(every=1), [REF, REF, REF - 0.02, REF - 0.001])
    assert [d.action for d in decisions] == ["step", "step", "hold", "step"]


def test_guard_mode_stops_where_the_step_would_get_too_small():
    schedule = FeedbackSchedule(every=1, recovery_epochs=0, step=0.1, min_step=0.05, mode="guard")
    decisions = _run(schedule, [REF, REF, REF - 0.1, REF, REF - 0.1, REF])
    assert decisions[-1].action == "done" and decisions[-1].sparsity == pytest.approx(0.2)


def test_target_mode_reaches_the_final_sparsity_by_the_deadline_whatever_the_feedback():
    schedule = FeedbackSchedule(initial=0.5, final=0.9, every=1, recovery_epochs=1)
    total = 8
    decisions = _run(schedule, [REF] + [REF - 0.05] * (total - 1), total=total)
    assert decisions[-2].sparsity == pytest.approx(0.9)  # reached before the last recovery epoch
    assert "forced by the deadline" in {d.reason for d in decisions}


def test_loss_monitors_count_a_rise_as_a_drop():
    schedule = FeedbackSchedule(every=1, higher_is_better=False, mode="guard")
    decisions = _run(schedule, [0.10, 0.10, 0.20])
    assert decisions[-1].action == "hold"


def test_state_round_trips_through_a_float_vector():
    schedule = FeedbackSchedule()
    _run(schedule, [REF, REF - 0.004, REF - 0.02])
    restored = FeedbackState.from_vector(schedule.state.as_vector())
    assert restored == schedule.state and not math.isnan(restored.reference)


@pytest.mark.parametrize("kwargs", [dict(initial=0.9, final=0.8), dict(initial=0.0), dict(step=0),
                                    dict(mode="fast"), dict(begin_epoch=0)])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        FeedbackSchedule(**kwargs)


def test_target_mode_keeps_the_final_level_instead_of_rolling_back():
    schedule = FeedbackSchedule(initial=0.5, final=0.7, every=1, recovery_epochs=1)
    decisions = _run(schedule, [REF, REF, REF, REF - 0.05, REF - 0.05, REF - 0.05], total=6)
    assert all(d.action != "rollback" for d in decisions)
    assert decisions[-1].sparsity == pytest.approx(0.7)


def test_with_one_epoch_target_mode_goes_straight_to_the_final_level():
    decisions = _run(FeedbackSchedule(initial=0.2, final=0.8, recovery_epochs=0), [REF], total=1)
    assert decisions[0].sparsity == pytest.approx(0.8)


def test_rolling_back_the_first_step_retries_with_half_the_step():
    schedule = FeedbackSchedule(initial=0.4, step=0.4, every=1, recovery_epochs=0, mode="guard")
    decisions = _run(schedule, [REF, REF - 0.1, REF])
    assert [(d.action, d.sparsity) for d in decisions] == [("step", 0.4), ("rollback", 0.0), ("step", 0.2)]


def test_a_nan_metric_counts_as_a_drop():
    decisions = _run(FeedbackSchedule(every=1, recovery_epochs=1, mode="guard"), [REF, float("nan"), float("nan")])
    assert [d.action for d in decisions] == ["step", "hold", "rollback"]


@pytest.mark.parametrize("monitor, mode, up", [("val_accuracy", "auto", True), ("val_mae", "auto", False),
                                               ("val_loss", "auto", False), ("val_mae", "max", True)])
def test_metric_direction_follows_earlystopping(monitor, mode, up):
    from kerasprune.sparsity.schedules import higher_is_better

    assert higher_is_better(monitor, mode) is up


@pytest.mark.parametrize("total, last_decision", [(3, 0), (4, 1), (10, 5)])
def test_the_final_level_is_decided_early_enough_to_ramp_in_and_recover(total, last_decision):
    schedule = FeedbackSchedule(initial=0.5, final=0.9, every=total, recovery_epochs=0)
    decisions = _run(schedule, [REF] + [REF - 0.004] * (total - 1), total=total)  # never comfortably inside
    reached = next(d.epoch for d in decisions if d.sparsity == pytest.approx(0.9))
    assert reached == last_decision  # ramps in during the next epoch; the rest recover


def test_a_geometric_ramp_removes_the_same_share_of_survivors_at_every_update():
    from kerasprune.sparsity.schedules import ramp_level

    densities = [1 - ramp_level(0.5, 0.98, i / 20) for i in range(21)]
    assert densities[0] == pytest.approx(0.5) and densities[-1] == pytest.approx(0.02)
    shares = [b / a for a, b in itertools.pairwise(densities)]
    assert shares == pytest.approx([shares[0]] * 20)  # 25x fewer weights in 20 equal cuts
    linear = [1 - ramp_level(0.5, 0.98, i / 20, "linear") for i in range(21)]
    assert linear[-1] / linear[-2] == pytest.approx(0.02 / 0.044)  # the last linear cut halves them


def test_a_ramp_has_a_known_shape_and_stays_within_its_ends():
    from kerasprune.sparsity.schedules import ramp_level

    assert ramp_level(0.2, 0.8, 1.5) == pytest.approx(0.8) and ramp_level(0.2, 0.8, -1) == pytest.approx(0.2)
    assert ramp_level(0.8, 0.5, 0.5) == pytest.approx(0.65)  # a rollback path is linear
    with pytest.raises(ConfigError, match="ramp must be one of geometric, linear"):
        ramp_level(0.2, 0.8, 0.5, "cubic")


def test_a_schedule_round_trips_through_its_config_as_json():
    import json

    schedule = FeedbackSchedule(initial=0.3, final=0.9, step=0.2, every=2, mode="guard")
    schedule.update(0, 0.9)  # state is not part of the settings
    config = json.loads(json.dumps(schedule.get_config()))
    assert config["class_name"] == "FeedbackSchedule"
    rebuilt = FeedbackSchedule.from_config(config["config"])
    assert rebuilt.get_config() == schedule.get_config()
    assert rebuilt.state == FeedbackState()
    assert FeedbackSchedule.from_config(config).final == 0.9
    with pytest.raises(ConfigError, match="unknown setting.*fnial"):
        FeedbackSchedule.from_config({"fnial": 0.9})
