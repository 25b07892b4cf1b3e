"""The paper's claims about each target, checked against our numbers (issue 14, item 7): one pass / FAIL /
not-checked row per claim of the figure's or table's caption and the text that discusses it (CLL paper, sections
4.1-4.3 and supplement D).

A claim reads the target's CSV (the frame its report wrote) and states the numbers it compared. At the ``ci`` or
``quick`` scale a claim may well fail: the notebooks show the row as FAIL with the scale caveat, never hide it. A
claim whose numbers are absent (rows not trained at this scale) is "not checked", as is a claim about a picture
(e.g. a near-linear boundary), which the figure shows. Thresholds that the paper states in words ("insensitive",
"nearly perfect") are named constants here, each with the passage it stands for.

Public API: :class:`Claim`, :func:`check_claims`, :func:`claims_frame`, :data:`TARGETS`, and what the notebooks show
of them: :func:`claims_summary`, :func:`styled_claims`, :func:`notebook_caveat`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..run_record import printed_p
from ..display import display_accuracy, display_significant, is_accuracy
from .records import scale_caveat
from .render import METRIC_LABELS, markdown_text

__all__ = ["Claim", "RESULTS", "TARGETS", "check_claims", "claims_frame", "claims_summary", "notebook_caveat",
           "styled_claims"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: what it says, where, whether our numbers bear it out (None: not checked)."""

    text: str
    source: str
    passed: bool | None
    numbers: str


RESULTS = {True: "pass", False: "FAIL", None: "not checked"}

TRUE_MARGIN = 0.3
"""Two-moons: the data's true margin 2ε (sec. 4.1: uniform noise of radius 0.1 around each sample)."""

NEAR_PERFECT_CRA = 99.0
"""Fig. D2 text "p = 0.0001 nearly achieves perfect CRA": at least this CRA (%) at the smallest slack."""

MIN_REL_GAIN = 3.0
"""Fig. 5 caption: "consistently better CRA with at least 3% improvement" (relative, in %)."""

SLACK_PEAK_P = 0.4
"""Sec. 4.3: CRA peaks at (printed) p = 0.4 in the slack sweep of Fig. 5 (left)."""

LAMBDA_FLAT = (1e-10, 1e-4)
"""Supplement D.1: CRA "fairly insensitive" to λ in this range (Fig. D4a) ..."""
FLAT_SPREAD = 1.0
"""... read as: its CRAs span at most this many points."""
LAMBDA_DROP = 1e-3
"""Supplement D.1: CRA drops for λ ≥ 1e-3."""

TEMPERATURE_K_SPREAD = 0.10
"""Supplement D.1 (Fig. D4c): temperature "has no impact on K(h∘f)": max / min - 1 of K(h∘f) at most this."""
TEMPERATURE_ACC_SPREAD = 2.0
"""... "little to no impact on accuracies": CRA and clean span at most this many points."""

D5_PAIR = ((0.75, 0.005), (0.5, 0.05))
"""Supplement D.1 (Table D5): (ε_train, printed p) = (0.75, 0.005) outperforms (0.5, 0.05) with a larger K(h∘f)."""


def _value(metric: str, value: float) -> str:
    """An accuracy rounded down to one decimal (the display rule), any other number to 3 significant digits."""
    return display_accuracy(value, 1) if is_accuracy(metric) else display_significant(value)


def _compare(text: str, source: str, pairs: Sequence[tuple[str, float, float]], metric: str,
             op: Callable[[float, float], bool], names: tuple[str, str]) -> Claim:
    """A claim that ``op(a, b)`` holds at every labelled pair; not checked when a pair has a missing value."""
    present = [(label, a, b) for label, a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    if not present:
        return Claim(text, source, None, "no runs at this scale")
    numbers = "; ".join(f"{label}: {names[0]} {_value(metric, a)} vs {names[1]} {_value(metric, b)}"
                        for label, a, b in present)
    missing = len(pairs) - len(present)
    return Claim(text, source, all(op(a, b) for _, a, b in present),
                 numbers + (f" ({missing} point(s) without runs)" if missing else ""))


def _series(text: str, source: str, xs: Sequence[float], ys: Sequence[float], metric: str,
            test: Callable[[np.ndarray, np.ndarray], bool], x_name: str) -> Claim:
    points = [(x, y) for x, y in zip(xs, ys) if not math.isnan(y)]
    if len(points) < 2:
        return Claim(text, source, None, "fewer than two points with runs")
    x, y = (np.asarray(v, dtype=float) for v in zip(*sorted(points)))
    numbers = ", ".join(f"{x_name} {display_significant(a)}: {_value(metric, b)}" for a, b in zip(x, y))
    return Claim(text, source, bool(test(x, y)), numbers)


def _falls(_, y) -> bool:
    return bool(np.all(np.diff(y) < 0))


def _rises(_, y) -> bool:
    return bool(np.all(np.diff(y) > 0))


def _visual(text: str, source: str, why: str = "a claim about the picture: see the figure") -> Claim:
    return Claim(text, source, None, why)


# ----------------------------------------------------------------------------------------------------
# two-moons (run summaries: one row per run)


def _fig4(t: pd.DataFrame) -> list[Claim]:
    mean = t.groupby(["method", "two_eps"])[["cra", "K_hf"]].mean()
    margins = sorted(set(t["two_eps"]))
    get = lambda method, m, col: float(mean[col].get((method, m), math.nan))  # noqa: E731
    at = lambda col, ms: [(f"2ε = {m:g}", get("cll", m, col), get("gloro", m, col)) for m in ms]  # noqa: E731
    true = [m for m in margins if math.isclose(m, TRUE_MARGIN)]
    beyond = [m for m in margins if m >= TRUE_MARGIN - 1e-9]
    drop = lambda method: (get(method, beyond[0], "cra") - get(method, beyond[-1], "cra")  # noqa: E731
                           if beyond else math.nan)
    return [
        _compare("GloRo has a consistently smaller K(h∘f) than CLL (at every 2ε)", "Fig. 4 caption",
                 at("K_hf", margins), "K_hf", lambda cll, gloro: gloro < cll, ("CLL", "GloRo")),
        _compare("CLL is 100 % accurate and robust (test CRA = 100) at the true margin 2ε = 0.3",
                 "Fig. 4 caption; sec. 4.1", [(f"2ε = {m:g}", get("cll", m, "cra"), 100.0) for m in true], "cra",
                 lambda cra, full: cra == full, ("CLL", "full")),
        _compare("GloRo already loses CRA at the true margin", "sec. 4.1",
                 [(f"2ε = {m:g}", get("gloro", m, "cra"), 100.0) for m in true], "cra", lambda cra, full: cra < full,
                 ("GloRo", "full")),
        _compare("CLL's CRA ≥ GloRo's at every 2ε (CLL retains sensible margins)", "Fig. 4 caption",
                 at("cra", margins), "cra", lambda cll, gloro: cll >= gloro, ("CLL", "GloRo")),
        _compare("Beyond the true margin CLL loses CRA more slowly than GloRo", "sec. 4.1",
                 [(f"CRA lost from 2ε = {beyond[0]:g} to {beyond[-1]:g}", drop("cll"), drop("gloro"))] if beyond
                 else [], "number", lambda cll, gloro: cll < gloro, ("CLL", "GloRo")),
        _visual("GloRo degenerates to a near-linear decision boundary for too-large margins", "Fig. 4 caption"),
    ]


def _figD2(t: pd.DataFrame) -> list[Claim]:
    t = t.assign(p_printed=[printed_p(float(p)) for p in t["p_eq5"]]).groupby("p_printed")[["cra", "K_hf"]].mean()
    ps = list(t.index)
    smallest, largest = min(ps), max(ps)
    return [
        _compare("The smallest slack nearly achieves perfect CRA", "supplement D, Fig. D2 text",
                 [(f"printed p = {smallest:g}", float(t["cra"][smallest]), NEAR_PERFECT_CRA)], "cra",
                 lambda cra, bar: cra >= bar, ("CRA", "bar")),
        _series("More slack gives a smoother model: K(h∘f) falls as p rises", "Fig. D2 caption; sec. 3.3",
                ps, list(t["K_hf"]), "K_hf", _falls, "p"),
        _compare("Less slack gives a higher CRA (smallest vs largest p)", "Fig. D2 caption",
                 [(f"CRA at p = {smallest:g} and {largest:g}", float(t["cra"][smallest]), float(t["cra"][largest]))],
                 "cra", lambda lo, hi: lo > hi, ("smallest p", "largest p")),
        _visual("p = 0.25 looks like GloRo; p = 0.75 is near piecewise-linear", "supplement D, Fig. D2 text"),
    ]


# ----------------------------------------------------------------------------------------------------
# paper tables (comparison frames: <metric>_ours per (dataset, method, model, variant))


def _row(t: pd.DataFrame, dataset: str, method: str, model: str, variant: str = "") -> pd.Series | None:
    hit = t[(t["dataset"] == dataset) & (t["method"] == method) & (t["model"] == model)
            & (t["variant"].fillna("") == variant)]
    return None if hit.empty else hit.iloc[0]


def _beats(t: pd.DataFrame, dataset: str, cll: tuple[str, str], base: tuple[str, str, str], metrics: Sequence[str],
           source: str) -> list[Claim]:
    ours, theirs = _row(t, dataset, "CLL", *cll), _row(t, dataset, *base)
    label = f"{dataset}: CLL {cll[0]} {cll[1]}".rstrip() + f" vs {base[0]} {base[1]} {base[2]}".rstrip()
    claims = []
    for metric in metrics:
        a = float(ours[f"{metric}_ours"]) if ours is not None else math.nan
        b = float(theirs[f"{metric}_ours"]) if theirs is not None else math.nan
        name = METRIC_LABELS[metric]
        claims.append(_compare(f"{label}: higher {name}", source, [(name, a, b)], metric, lambda x, y: x > y,
                               ("CLL", base[0])))
    return claims


def _seeds(t: pd.DataFrame, n: int, source: str) -> Claim:
    cll = t[t["method"] == "CLL"]
    counts = [int(c) for c in cll["cra_36_n"] if c > 0]
    if not counts:
        return Claim(f"CLL numbers are averages over {n} seeds", source, None, "no CLL runs at this scale")
    return Claim(f"CLL numbers are averages over {n} seeds", source, all(c == n for c in counts),
                 f"seeds per CLL row with runs: {counts}")


def _table1(t: pd.DataFrame) -> list[Claim]:
    d, src = "Tiny-ImageNet", "Table 1 caption; sec. 4.2"
    return [*_beats(t, d, ("8C2F", "eps=0.5,p=0.01"), ("GloRo", "8C2F", "TRADES,reproduced"),
                    ("cra_36", "clean", "tightness"), src),
            *_beats(t, d, ("LipConv-20", ""), ("SOC", "LipConv-20", ""), ("cra_36", "cra_108", "clean"), src),
            *_beats(t, d, ("8C2F", "eps=1.0,p=0.025"), ("LBDN", "Sandwich", ""), ("cra_36", "cra_108", "clean"),
                    src),
            _seeds(t, 9, "Table 1 caption")]


def _table2(t: pd.DataFrame) -> list[Claim]:
    src = "Table 2; sec. 4.2"
    claims = [*_beats(t, "CIFAR-10", ("6C2F", ""), ("GloRo", "6C2F", ""), ("cra_36", "clean"), src),
              *_beats(t, "CIFAR-10", ("4C3F", ""), ("GloRo", "4C3F", "reproduced"), ("cra_36", "clean", "tightness"),
                      src),
              *_beats(t, "CIFAR-10", ("LipConv-20", ""), ("SOC", "LipConv-20", ""), ("cra_36", "K_hf"), src)]
    for dataset in ("CIFAR-10", "CIFAR-100"):
        claims += _beats(t, dataset, ("XL", "CPL-XL"), ("CPL", "XL", ""), ("cra_36", "tightness"), src)
    claims += _beats(t, "CIFAR-100", ("LipConv-20", ""), ("SOC", "LipConv-20", ""), ("cra_36",), src)
    return [*claims, _seeds(t, 9, "sec. 4.2")]


def _locallip_table2(t: pd.DataFrame) -> list[Claim]:
    """Seed 004 table 2, CIFAR-10: B certifies more than G on 4C3F and 6C2F; MaxMin raises B's on 6C2F."""
    cra = lambda method, model, variant="": float(  # noqa: E731
        r["cra_ours"]) if (r := _row(t, "CIFAR-10", method, model, variant)) is not None else math.nan
    pairs = [(f"CIFAR-10 {m}: Local-Lip-B certifies more than Local-Lip-G", ("Local-Lip-B", m), ("Local-Lip-G", m),
              ("Local-Lip-B", "Local-Lip-G")) for m in ("4C3F", "6C2F")]
    pairs.append(("CIFAR-10 6C2F: MaxMin raises Local-Lip-B's certified accuracy", ("Local-Lip-B", "6C2F", "MaxMin"),
                  ("Local-Lip-B", "6C2F"), ("MaxMin", "ReLUθ")))
    return [_compare(text, "seed 004, table 2 (CIFAR-10)", [("Certified", cra(*a), cra(*b))], "cra",
                     lambda x, y: x > y, names) for text, a, b, names in pairs]


def _per_seed(t: pd.DataFrame) -> list[Claim]:
    claims = []
    for (model, variant), block in t.groupby(["model", t["variant"].fillna("")], sort=False):
        seeds = block[block["row"].astype(str).str.isdigit()]
        n = int(seeds["cra_36_ours"].notna().sum()) if "cra_36_ours" in block else 0
        label = f"{model} {variant}".strip()
        claims.append(Claim(f"{label}: nine seeds per configuration", "supplement D.2", None if n == 0 else n == 9,
                            f"our seeds with a CRA: {n}"))
        avg, std = block[block["row"] == "avg"], block[block["row"] == "std"]
        if avg.empty or std.empty or "cra_36_ours" not in block:
            continue
        ours, paper, spread = (float(avg["cra_36_ours"].iloc[0]), float(avg["cra_36_paper"].iloc[0]),
                               float(std["cra_36_paper"].iloc[0]))
        claims.append(_compare(f"{label}: our mean CRA 36/255 within 2 printed std of the printed mean",
                               "supplement D.2 (avg and std columns)", [("CRA 36/255", ours, paper)], "cra_36",
                               lambda a, b: abs(a - b) <= 2 * spread, ("ours", "paper")))
    claims.append(_visual("The standard deviation is similar to values reported in related work", "supplement D.2",
                          "a comparison with other papers' numbers: not checked here"))
    return claims


def _tableD5(t: pd.DataFrame) -> list[Claim]:
    claims = []
    for metric, test, verb in (("clean_ours", _falls, "falls"), ("cra_108_ours", _rises, "rises")):
        for p, sub in t.groupby("p_printed"):
            claims.append(_series(f"At printed p = {p:g}, {METRIC_LABELS[metric[:-5]]} {verb} as ε_train grows",
                                  "supplement D.1 (ε–p ablation)", list(sub["eps_train"]), list(sub[metric]),
                                  metric[:-5], test, "ε_train"))
    (better, worse) = [t[np.isclose(t["eps_train"], e) & np.isclose(t["p_printed"], p)] for e, p in D5_PAIR]
    for metric in ("clean", "cra_36", "K_hf"):
        a = float(better[f"{metric}_ours"].iloc[0]) if not better.empty else math.nan
        b = float(worse[f"{metric}_ours"].iloc[0]) if not worse.empty else math.nan
        claims.append(_compare(f"ε_train = {D5_PAIR[0][0]:g}, p = {D5_PAIR[0][1]:g} has a higher "
                               f"{METRIC_LABELS[metric]} than "
                               f"ε_train = {D5_PAIR[1][0]:g}, p = {D5_PAIR[1][1]:g}", "supplement D.1",
                               [(metric, a, b)], metric, lambda x, y: x > y, ("first", "second")))
    return claims


# ----------------------------------------------------------------------------------------------------
# sweeps


def _fig5_eps(t: pd.DataFrame) -> list[Claim]:
    eps = [f"ε = {e:g}" for e in t["eps"]]
    pairs = lambda col: list(zip(eps, t[f"cll_{col}"], t[f"gloro_{col}"]))  # noqa: E731
    return [
        _compare("CLL's CRA is higher than GloRo's at every ε", "Fig. 5 caption", pairs("cra_ours"), "cra",
                 lambda a, b: a > b, ("CLL", "GloRo")),
        _compare("The relative CRA gain of CLL over GloRo is at least 3 % at every ε", "Fig. 5 caption; sec. 4.3",
                 list(zip(eps, t["rel_gain_ours_pct"], [MIN_REL_GAIN] * len(t))), "rel_gain",
                 lambda gain, bar: gain >= bar, ("gain", "bar")),
        _compare("CLL's K(f) is less constrained (larger) than GloRo's", "Fig. 5 caption (middle)", pairs("K_f"), "K_f",
                 lambda a, b: a > b, ("CLL", "GloRo")),
        _compare("CLL's bounds are tighter than GloRo's", "Fig. 5 caption (right)", pairs("tightness"), "tightness",
                 lambda a, b: a > b, ("CLL", "GloRo")),
    ]


def _fig5_slack(t: pd.DataFrame) -> list[Claim]:
    ps, clean, cra = list(t["p_printed"]), list(t["clean"]), list(t["cra"])
    peak = ps[int(np.nanargmax(cra))] if not all(math.isnan(c) for c in cra) else math.nan
    return [
        _compare("Clean accuracy falls as the slack p rises (smallest vs largest p)", "sec. 4.3",
                 [(f"clean at p = {ps[0]:g} and {ps[-1]:g}", clean[0], clean[-1])] if ps else [], "clean",
                 lambda a, b: a > b, ("smallest p", "largest p")),
        Claim(f"CRA peaks at printed p = {SLACK_PEAK_P:g}", "sec. 4.3",
              None if math.isnan(peak) else math.isclose(peak, SLACK_PEAK_P), f"our CRA peaks at p = {peak:g}"),
    ]


def _figD1(t: pd.DataFrame) -> list[Claim]:
    stats = {}
    for method, sub in t.groupby("method"):
        cra = sub.sort_values("epoch")["cra"].to_numpy(float)
        reach = sub["epoch"].to_numpy()[int(np.argmax(cra >= 0.9 * np.nanmax(cra)))] if cra.size else math.nan
        stats[method] = (float(reach), float(np.mean(np.abs(np.diff(cra)))) if cra.size > 1 else math.nan)
    cll, gloro = stats.get("CLL", (math.nan,) * 2), stats.get("GloRo", (math.nan,) * 2)
    return [
        _compare("CLL converges faster: it reaches 90 % of its best CRA in fewer epochs", "Fig. D1; supplement D.1",
                 [("epoch", cll[0], gloro[0])], "number", lambda a, b: a < b, ("CLL", "GloRo")),
        _compare("CLL is less noisy: smaller mean epoch-to-epoch CRA change", "supplement D.1",
                 [("mean |ΔCRA|", cll[1], gloro[1])], "number", lambda a, b: a < b, ("CLL", "GloRo")),
    ]


def _figD4_lambda(t: pd.DataFrame) -> list[Claim]:
    flat = t[(t["value"] >= LAMBDA_FLAT[0]) & (t["value"] <= LAMBDA_FLAT[1])]["cra"].dropna()
    high = t[t["value"] >= LAMBDA_DROP]["cra"].dropna()
    spread = float(flat.max() - flat.min()) if len(flat) > 1 else math.nan
    return [
        _compare(f"CRA is insensitive to λ in [{LAMBDA_FLAT[0]:g}, {LAMBDA_FLAT[1]:g}] "
                 f"(spread ≤ {FLAT_SPREAD:g} points)",
                 "supplement D.1 (Fig. D4a)", [("CRA spread", spread, FLAT_SPREAD)], "number", lambda a, b: a <= b,
                 ("spread", "bar")),
        _compare(f"CRA drops for λ ≥ {LAMBDA_DROP:g}", "supplement D.1 (Fig. D4a)",
                 [("CRA", float(high.max()) if len(high) else math.nan,
                   float(flat.min()) if len(flat) else math.nan)], "cra", lambda a, b: a < b,
                 ("best at large λ", "worst in the flat range")),
        _series("K(f) rises as λ falls", "supplement D.1 (Fig. D4a)", list(t["value"]), list(t["K_f"]), "K_f", _falls,
                "λ"),
    ]


def _figD4_delta(t: pd.DataFrame) -> list[Claim]:
    return [_series("CRA rises with the margin offset δ", "supplement D.1 (Fig. D4b)", list(t["value"]),
                    list(t["cra"]), "cra", lambda _, y: y[-1] > y[0], "δ"),
            _series("Clean accuracy consistently falls as δ rises", "supplement D.1 (Fig. D4b)", list(t["value"]),
                    list(t["clean"]), "clean", _falls, "δ")]


def _spread(values: pd.Series, relative: bool) -> float:
    values = values.dropna()
    if len(values) < 2:
        return math.nan
    return float(values.max() / values.min() - 1.0) if relative else float(values.max() - values.min())


def _figD4_temperature(t: pd.DataFrame) -> list[Claim]:
    k = "K_hf" if "K_hf" in t else "K_f"
    return [_compare("Temperature scaling of GloRo has no impact on K(h∘f)", "supplement D.1 (Fig. D4c)",
                     [("relative spread", _spread(t[k], True), TEMPERATURE_K_SPREAD)], "number", lambda a, b: a <= b,
                     ("spread", "bar")),
            _compare("... and little to no impact on accuracies", "supplement D.1 (Fig. D4c)",
                     [(name, _spread(t[name], False), TEMPERATURE_ACC_SPREAD) for name in ("cra", "clean")], "number",
                     lambda a, b: a <= b, ("spread", "bar"))]


TARGETS: dict[str, Callable[[pd.DataFrame], list[Claim]]] = {
    "fig4": _fig4, "figD2": _figD2, "table1": _table1, "table2": _table2, "locallip_table2": _locallip_table2,
    "tableD6": _per_seed, "tableD7": _per_seed,
    "tableD8": _per_seed, "tableD5": _tableD5, "fig5_eps_sweep": _fig5_eps, "fig5_slack_sweep": _fig5_slack,
    "figD1": _figD1, "figD4_lambda": _figD4_lambda, "figD4_delta": _figD4_delta,
    "figD4_temperature": _figD4_temperature,
}
"""The targets with claims, by the name of their CSV (a figure's sweeps have one each)."""


def check_claims(target: str, table: pd.DataFrame) -> list[Claim]:
    """The claims of ``target`` checked against its CSV ``table``; ValueError for a target without claims."""
    if target not in TARGETS:
        raise ValueError(f"no claims for target {target!r}; known: {sorted(TARGETS)}")
    return TARGETS[target](table)


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: the claim, where the paper makes it, pass / FAIL / not checked, our numbers."""
    return pd.DataFrame({"claim": [c.text for c in claims], "paper": [c.source for c in claims],
                         "result": [RESULTS[c.passed] for c in claims], "ours": [c.numbers for c in claims]})


_RESULT_STYLE = {"pass": "color: darkgreen", "FAIL": "color: firebrick; font-weight: bold"}


def claims_summary(frame: pd.DataFrame, scale: str) -> str:
    """The count of each result as a Markdown line, e.g. ``2 pass, 3 FAIL, 1 not checked (scale ci).``"""
    counts = frame["result"].value_counts()
    return markdown_text(", ".join(f"{counts.get(r, 0)} {r}" for r in RESULTS.values()) + f" (scale {scale}).")


def styled_claims(frame: pd.DataFrame):
    """The claims table as the notebooks show it: left-aligned, the result coloured (pass green, FAIL red)."""
    return frame.style.hide(axis="index").set_properties(**{"text-align": "left"}).map(
        lambda result: _RESULT_STYLE.get(result, "color: gray"), subset=["result"])


def notebook_caveat(scale: str) -> str | None:
    """The scale caveat of a notebook as Markdown (None at the paper's scale), saying that claims may fail."""
    caveat = scale_caveat(scale)
    if caveat is None:
        return None
    return (f"**{markdown_text(caveat[0].upper() + caveat[1:])}.** A claim of the paper may fail at this scale; "
            "the check below says so rather than hiding it.")
