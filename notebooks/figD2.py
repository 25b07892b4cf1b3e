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
# # Fig. D2: slack control on two-moons
# CLL at the true margin 2*eps = 0.3 for printed p from 0.75 to 1e-4 (eq. (5) p = printed/2): with high slack the boundary becomes smooth and CRA drops; p = 1e-4 nearly reaches perfect CRA.
#
# Rendered by the workflow (`snakemake figD2`) with papermill; the parameters below are injected.

# %% tags=["parameters"]
table_csv = "results/paper/tables/figD2.csv"
figure_png = "results/paper/figures/figD2.png"
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
