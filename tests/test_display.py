"""The display rule of the reports (issue 14, item 7): exact numbers in CSV / JSON, accuracies rounded down where a
person reads them, one definition (lipcert.display) used by the tables, figures and notebooks."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from lipcert.display import (MISSING, csv_float, display_accuracy, display_metric, display_number,
                                       display_significant, is_accuracy)
from lipcert.reporting.render import csv_text, display_frame, markdown_text, mean_std_cell, ours_paper_cell
from lipcert.reporting.records import SeedSummary


@pytest.mark.parametrize("value, decimals, shown", [
    (99.995, 2, "99.99"),     # rounding to nearest would print 100.00
    (100.0, 2, "100.00"),     # only a true 100 shows as 100
    (99.96, 1, "99.9"),
    (99.9999, 1, "99.9"),
    (12.3, 2, "12.30"),       # 12.3 is stored as 12.2999...; floored on its repr, not on the binary value
    (0.1 + 0.2, 1, "0.3"),    # 0.30000000000000004
    (61.9, 1, "61.9"),        # a paper value stays as printed
    (0.0, 2, "0.00"),
    (100 * (255 / 400), 2, "63.75"),      # stored as 63.74999999999999: a count ratio's float noise is no deficit
    (100 * (9999 / 10000), 2, "99.99"),
    (100 * (19999 / 20000), 2, "99.99"),  # 99.995 % of 20 000 test points: never 100.00
])
def test_accuracies_are_rounded_down(value, decimals, shown):
    assert display_accuracy(value, decimals) == shown


def test_other_numbers_are_rounded_to_nearest_and_missing_is_a_dash():
    assert display_number(99.995, 2) == "100.00"  # not an accuracy: nearest (repr 99.995 is a tie -> even)
    assert display_number(2.675, 2) == "2.68" and display_number(0.125, 2) == "0.12"  # ties to even, on the repr
    assert display_number(-0.04, 1) == "0.0"  # no "-0.0"
    assert display_number(-1.26, 1) == "-1.3"
    assert display_accuracy(math.nan) == MISSING and display_number(None) == MISSING and MISSING == "–"
    assert display_significant(288.31) == "288" and display_significant(1234.5) == "1234"
    assert display_significant(2.5e-05) == "2.5e-05" and display_significant(11.64) == "11.6"


def test_accuracy_metrics_by_name():
    for name in ("clean", "cra", "train_cra", "tightness", "cra_36", "cra_0.141176", "cll_cra_ours", "gloro_tightness",
                 "clean_paper"):
        assert is_accuracy(name), name
    for name in ("K_f", "K_hf", "clean_std", "cra_36_diff", "cra_36_n", "rel_gain_ours_pct", "eps", "p_printed"):
        assert not is_accuracy(name), name
    assert display_metric("cra_36", 99.96) == "99.9" and display_metric("K_f", 99.96) == "100.0"


def test_cells_floor_accuracies_but_not_their_std():
    assert ours_paper_cell(99.995, math.nan, 1, 100.0, " ± ", accuracy=True) == "99.9 (100.0)"
    assert ours_paper_cell(99.995, math.nan, 1, 100.0, " ± ") == "100.0 (100.0)"  # a constant: nearest
    assert mean_std_cell(SeedSummary(99.96, 0.06, 3), accuracy=True) == "99.9 ± 0.1"
    assert ours_paper_cell(math.nan, math.nan, 0, 61.9, " ± ", accuracy=True) == "– (61.9)"


def test_csv_and_json_keep_every_float_exactly():
    assert csv_float(99.995) == "99.995" and csv_float(0.1 + 0.2) == "0.30000000000000004" and csv_float(None) == ""
    frame = pd.DataFrame({"cra": [99.995, 1 / 3, math.nan], "K_f": [1234.5678901234, 2.5e-05, 7.0], "m": list("abc")})
    text = csv_text(frame)
    assert "99.995," in text and repr(1 / 3) in text and "1234.5678901234" in text
    back = pd.read_csv(__import__("io").StringIO(text))
    assert back["cra"].iloc[0] == 99.995 and back["cra"].iloc[1] == 1 / 3 and math.isnan(back["cra"].iloc[2])
    assert json.loads(json.dumps({"cra": 99.995}))["cra"] == 99.995  # atomic_write_json uses json: repr floats


def test_display_frame_and_markdown_text():
    shown = display_frame(pd.DataFrame({"cra": [99.995, 100.0], "cra_std": [0.456, math.nan], "K_f": [1234.56, 0.5]}))
    assert shown["cra"].tolist() == ["99.99", "100.00"]
    assert shown["cra_std"].tolist() == ["0.456", "–"] and shown["K_f"].tolist() == ["1235", "0.5"]
    assert markdown_text("2*eps = 0.3, eps_train") == "2\\*eps = 0.3, eps\\_train"
