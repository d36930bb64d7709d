import pytest

from seq2seq.training.schedules import TeacherForcingSchedule


def test_constant():
    assert TeacherForcingSchedule("constant", 0.7, 0.0, decay_steps=1000).ratio(10**6) == 0.7


@pytest.mark.parametrize("kind", ["linear", "exponential", "inverse_sigmoid"])
def test_decaying_schedules_go_from_start_to_end(kind):
    schedule = TeacherForcingSchedule(kind, start=1.0, end=0.2, decay_steps=1000)
    ratios = [schedule.ratio(step) for step in range(0, 3001, 100)]
    assert ratios[0] == pytest.approx(1.0, abs=0.01)
    assert all(a >= b - 1e-12 for a, b in zip(ratios, ratios[1:]))  # never increases
    assert ratios[-1] == pytest.approx(0.2, abs=0.02)


def test_linear_midpoint():
    assert TeacherForcingSchedule("linear", 1.0, 0.0, 100).ratio(50) == pytest.approx(0.5)
