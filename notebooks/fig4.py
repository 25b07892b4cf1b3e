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
# # Fig. 4: CLL vs GloRo on two-moons
# CLL (paper: 100 % CRA at the true margin 2*eps = 0.3) against GloRo (lower CRA, smaller K(h o f)) for 2*eps in {0.2, 0.3, 0.4, 0.5}.
#
# Rendered by the workflow (`snakemake fig4`) with papermill; the parameters below are injected.

# %% tags=["parameters"]
table_csv = "results/paper/tables/fig4.csv"
figure_png = "results/paper/figures/fig4.png"
scale = "paper"

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

table = pd.read_csv(table_csv)
if scale != "paper":
    display(Markdown(f"**Built at scale '{scale}'**: not comparable with the paper without this caveat."))
display(table)

# %% [markdown]
# ## Figure

# %%
display(Image(filename=figure_png))

# %% [markdown]
# ## Summary per method

# %%
summary = table.groupby([c for c in ("method", "two_eps", "p_eq5") if c in table and table[c].notna().any()],
                        dropna=False)[["clean", "cra", "K_f", "K_hf"]].mean()
display(summary)
