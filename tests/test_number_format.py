"""Numbers people read: whole numbers print as integers everywhere metrics and steps are printed."""

from __future__ import annotations

from evsys.report import format_number, format_run_summary


def test_whole_numbers_print_as_integers() -> None:
    assert format_number(40000.0) == "40000"
    assert format_number(40000) == "40000"
    assert format_number(123456789.0) == "123456789"
    assert format_number(-3.0, "+.4g") == "-3" and format_number(3.0, "+.4g") == "+3"


def test_other_numbers_keep_four_significant_digits() -> None:
    assert format_number(0.123456) == "0.1235"
    assert format_number(12345.6) == "1.235e+04"
    assert format_number(0.25, "+.4g") == "+0.25"
    assert format_number(float("nan")) == "nan" and format_number(True) == "True"


def test_a_run_summary_prints_step_counts_whole() -> None:
    record = {
        "run_id": "r",
        "status": "completed",
        "duration_s": 1.0,
        "run_dir": "d",
        "metrics": {"train/steps": 40000.0, "baseline/x": 2.0, "x": 40002.0},
    }
    text = format_run_summary(record)
    assert "train/steps  40000" in text and "e+" not in text
    assert "+40000" in text
