# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Two-moons analysis (CLL paper Fig. 4 and supplement Fig. D2)
# Rendered per target by the workflow (`snakemake fig4`, `snakemake figD2`) with papermill; the parameters below
# are injected (`run_dirs`: the target's run directories, space-separated). Numbers are shown by the display rule
# of `lipcert.display` (accuracies rounded down); the CSV holds the exact values.

# %% tags=["parameters"]
target = "fig4"
table_csv = "results/paper/tables/fig4.csv"
figure_png = "results/paper/figures/fig4.png"
scale = "paper"
run_dirs = ""

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from lipcert.reporting.claims import (check_claims, claims_frame, claims_summary, notebook_caveat,
                                      styled_claims)
from lipcert.reporting.curves import history_frame, history_png
from lipcert.reporting.paper_tables import read_sources
from lipcert.reporting.render import display_frame, markdown_text, quote_sentence

table = pd.read_csv(table_csv, keep_default_na=False, na_values=[""])
quoted = read_sources()
display(Markdown(f"## {target}, scale `{scale}`"))
display(Markdown(markdown_text(quote_sentence(quoted[target]) if target in quoted else "No quoted claim.")))
if notebook_caveat(scale):
    display(Markdown(notebook_caveat(scale)))

# %% [markdown]
# ## The paper's claims, checked against our numbers

# %%
claims = claims_frame(check_claims(target, table))
display(Markdown(claims_summary(claims, scale)))
display(styled_claims(claims))

# %% [markdown]
# ## Figure

# %%
display(Image(filename=figure_png))

# %% [markdown]
# ## Runs (the target's Markdown report: one row per run, accuracies in %, rounded down; exact values in the CSV)

# %%
display(Markdown(Path(table_csv).with_suffix(".md").read_text()))

# %% [markdown]
# ## Means per configuration

# %%
keys = [c for c in ("method", "two_eps", "p_eq5") if c in table and table[c].notna().any()]
display(display_frame(table.groupby(keys, dropna=False)[["clean", "cra", "K_f", "K_hf"]].mean().reset_index()))

# %% [markdown]
# ## Training curves (history.json of every run)

# %%
history = history_frame(run_dirs.split())
display(Image(data=history_png(history, scale)))
