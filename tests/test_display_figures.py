"""Publishable figures (issue 14, item 7): paper width, TrueType PDF fonts, ≥ 7 pt text, a legend and a caption on
every figure, the scale stamped, numbers shown by the display rule (a CRA of 99.995 % shows as 99.99 %). Drawn from
synthetic grid files and frames: no training."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lipcert.reporting.figure_style import FONT_PT, PAPER_WIDTH_IN, STYLE, paper_style
from lipcert.reporting.sweep_figures import draw_curves, draw_eps_sweep, draw_param_sweep, draw_slack_sweep
from lipcert.reporting.two_moons_figures import draw_figure, load_panel, plot_panels


def pdf_facts(pdf: Path) -> dict:
    """Page width in points and the font subtypes of a PDF written by matplotlib (font dictionaries are plain)."""
    data = pdf.read_bytes()
    box = re.search(rb"/MediaBox \[ 0 0 ([0-9.]+) ([0-9.]+) \]", data)
    return {"width_pt": float(box.group(1)), "height_pt": float(box.group(2)),
            "subtypes": set(re.findall(rb"/Subtype /(Type3|Type1|TrueType|CIDFontType2|CIDFontType0|Type0)", data)),
            "embedded_truetype": b"/FontFile2" in data}


def png_size(png: Path) -> tuple[int, int]:
    return struct.unpack(">II", png.read_bytes()[16:24])


def texts(fig) -> list:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


def assert_publishable(fig, pdf: Path, png: Path, scale: str) -> list[str]:
    facts = pdf_facts(pdf)
    assert facts["width_pt"] == pytest.approx(PAPER_WIDTH_IN * 72)  # 12.2 cm: the LNCS text width
    assert b"Type3" not in facts["subtypes"] and facts["embedded_truetype"], facts
    assert png_size(png)[0] == round(PAPER_WIDTH_IN * STYLE["savefig.dpi"])
    shown = texts(fig)
    small = [(t.get_text(), t.get_fontsize()) for t in shown if t.get_fontsize() < FONT_PT]
    assert not small, small
    strings = [t.get_text() for t in shown]
    assert f"scale: {scale}" in strings
    legend_labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert legend_labels, "no legend"
    return strings + legend_labels


def write_grid(path: Path, cra: float, eps: float = 0.15, k_hf: float = 12.345) -> Path:
    """A two-class grid file: boundary x = 0.5, radius |x - 0.5| / 2, ten training points."""
    xs, ys = np.linspace(-1.0, 2.0, 30), np.linspace(-1.0, 1.0, 20)
    gx = np.broadcast_to(xs, (20, 30))
    logits = np.stack([np.zeros_like(gx), gx - 0.5], axis=-1)
    x_train = np.column_stack([np.linspace(-1, 2, 10), np.zeros(10)])
    meta = {"method_label": "CLL", "eps": eps, "cra": cra, "K_hf": k_hf, "n_test": 400, "n_train": 10}
    np.savez(path, xs=xs, ys=ys, logits=logits, predicted=(gx > 0.5).astype(np.int64),
             radius=np.abs(gx - 0.5) / 2.0, x_train=x_train, y_train=(x_train[:, 0] > 0.5).astype(np.int64),
             train_certified=np.abs(x_train[:, 0] - 0.5) / 2.0 > eps, eps=np.float64(eps),
             metadata=np.array([json.dumps(meta)]))
    return path


def test_two_moons_figure_floors_the_cra_and_says_what_everything_is(tmp_path):
    grids = [write_grid(tmp_path / "a.npz", 99.995), write_grid(tmp_path / "b.npz", 100.0)]
    png, pdf = plot_panels(grids, tmp_path / "f.png", tmp_path / "f.pdf", ncols=4, scale="ci")
    with paper_style():
        fig = draw_figure([load_panel(g) for g in grids], 4, scale="ci")
    strings = assert_publishable(fig, pdf, png, "ci")
    assert "CRA 99.99%" in strings and "CRA 100.00%" in strings  # 99.995 never shows as 100
    assert "K(h∘f) 12.3" in strings and "CLL, 2ε = 0.3" in strings
    for label in ("decision boundary", "margin: certified radius = ε", "band: radius ≤ ε, not certified",
                  "training point, class 0", "training point misclassified or not certified at ε"):
        assert label in strings, label
    caption = " ".join(strings)
    assert "on 400 test points" in caption and "the training set (10 points)" in caption
    assert any(s.startswith("Built at scale 'ci'") for s in strings)


def test_seven_panels_wrap_to_four_columns_at_paper_width(tmp_path):
    grids = [write_grid(tmp_path / f"{i}.npz", 50.0 + i) for i in range(7)]
    with paper_style():
        fig = draw_figure([load_panel(g) for g in grids], 7, scale="paper")
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 4)
    width, height = fig.get_size_inches()
    assert width == pytest.approx(PAPER_WIDTH_IN) and height < 4.0
    assert "scale: paper" in [t.get_text() for t in texts(fig)]
    assert not any("Built at scale" in t.get_text() for t in texts(fig))  # no caveat at the paper's scale


def sweep_frame() -> pd.DataFrame:
    rows = []
    for eps in (0.15, 0.5):
        row = {"eps": eps}
        for prefix, cra in (("gloro", 50.0), ("cll", 99.995)):
            row.update({f"{prefix}_cra_ours": cra, f"{prefix}_cra_std": 0.5, f"{prefix}_cra_paper": cra - 1,
                        f"{prefix}_K_f": 10.0, f"{prefix}_K_f_std": 1.0, f"{prefix}_tightness": 70.0,
                        f"{prefix}_tightness_std": 2.0})
        rows.append(row)
    return pd.DataFrame(rows)


def test_sweep_figures_have_legend_caption_scale_and_truetype_fonts(tmp_path):
    figures = {
        "eps": draw_eps_sweep(sweep_frame(), ("GloRo", "CLL"), tmp_path / "eps", "ci", "Fig. 5"),
        "slack": draw_slack_sweep(pd.DataFrame({"p_printed": [0.01, 0.4], "clean": [80.0, 70.0],
                                                "clean_std": [1.0, 1.0], "cra": [55.0, 60.0], "cra_std": [0.5, 0.5],
                                                "n": [2, 2]}),
                                  0.141176, tmp_path / "slack", "ci", "Fig. 5 left"),
        "curves": draw_curves(pd.DataFrame({"method": ["CLL", "CLL", "GloRo", "GloRo"], "epoch": [1, 2, 1, 2],
                                            "cra": [40.0, 50.0, 30.0, 45.0], "cra_std": [1.0, 1.0, None, None]}),
                              ["CLL", "GloRo"], 0.141176, tmp_path / "curves", "quick", "Fig. D1"),
        "param": draw_param_sweep(pd.DataFrame({"method": ["CLL", "CLL"], "value": [1e-10, 1e-3],
                                                "cra": [60.0, 50.0], "cra_std": [0.0, 0.0], "clean": [77.0, 70.0],
                                                "clean_std": [0.0, 0.0], "n": [1, 1], "K_f": [1000.0, 10.0],
                                                "eps_cert": [0.141176] * 2}),
                                  "loss.lam", tmp_path / "param", "paper", "Fig. D4a"),
    }
    scales = {"eps": "ci", "slack": "ci", "curves": "quick", "param": "paper"}
    labels = {}
    for name, fig in figures.items():
        labels[name] = assert_publishable(fig, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png", scales[name])
    assert {"GloRo (ours)", "CLL (ours)", "GloRo (paper)", "CLL (paper)"} <= set(labels["eps"])
    assert any("error bars: sample std" in s for s in labels["eps"])
    assert any("dashed ×: the paper's table in" in s for s in labels["eps"])
    assert {"clean", "CRA ε = 0.141"} <= set(labels["slack"])
    assert {"CLL (mean)", "CLL ± std"} <= set(labels["curves"]) and any("band: ± sample std" in s
                                                                          for s in labels["curves"])
    assert {"CLL CRA", "CLL clean", "CLL K(f)"} <= set(labels["param"])  # the twin axis's line is in the legend
