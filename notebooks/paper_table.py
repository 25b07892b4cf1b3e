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
# # Paper table or sweep: ours next to the paper's numbers
# Rendered per target (`snakemake table2`, `snakemake fig5`, ...) with papermill from the target's CSV (and its
# figure, `run_dirs`: its run directories, space-separated). Rows whose method is not implemented show the
# paper's values marked "paper value, not reproduced". Numbers are shown by the display rule of
# `lipcert.display` (accuracies rounded down); the CSV holds the exact values.

# %% tags=["parameters"]
target = "table2"
table_csv = "results/paper/tables/table2.csv"
figure_png = ""
scale = "paper"
run_dirs = ""

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from lipcert.reporting.claims import (check_claims, claims_frame, claims_summary, notebook_caveat,
                                      styled_claims)
from lipcert.reporting.curves import history_frame, history_png
from lipcert.reporting.render import display_frame

table = pd.read_csv(table_csv, keep_default_na=False, na_values=[""])
display(Markdown(f"## {target}, scale `{scale}`"))
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
if figure_png:
    display(Image(filename=figure_png))
else:
    display(Markdown("A table target: no figure."))

# %% [markdown]
# ## Table (the target's Markdown report: accuracies in %, rounded down; every column in the CSV)

# %%
display(Markdown(Path(table_csv).with_suffix(".md").read_text()))

# %% [markdown]
# ## Differences ours - paper (rows with runs)

# %%
diff_cols = [c for c in table.columns if c.endswith("_diff")]
if diff_cols and "status" in table:
    built = table[table["status"] != "paper value, not reproduced"]
    display(display_frame(built[[c for c in table.columns if not c.endswith(("_n", "_std"))][:4] + diff_cols]))
else:
    display(Markdown("No comparable columns in this table."))

# %% [markdown]
# ## Training curves (history.json of every run)

# %%
if run_dirs.split():
    display(Image(data=history_png(history_frame(run_dirs.split()), scale)))
else:
    display(Markdown("No runs at this scale."))
