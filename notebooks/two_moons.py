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
# Rendered per target by the workflow (`snakemake fig4`, `snakemake figD2`) with papermill; the
# parameters below are injected.

# %% tags=["parameters"]
target = "fig4"
table_csv = "results/paper/tables/fig4.csv"
figure_png = "results/paper/figures/fig4.png"
scale = "paper"

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from lipcert.reporting.paper_tables import read_sources
from lipcert.reporting.render import quote_sentence

# the paper's claim for this figure: quoted in params/paper_tables/sources.yaml (the one file of quoted numbers)
quoted = read_sources()
display(Markdown(f"**{target}**. " + (quote_sentence(quoted[target]) if target in quoted else "No quoted claim.")))
if scale != "paper":
    display(Markdown(f"**Built at scale '{scale}'**: not comparable with the paper without this caveat."))
table = pd.read_csv(table_csv)
display(table)

# %% [markdown]
# ## Figure

# %%
display(Image(filename=figure_png))

# %% [markdown]
# ## Means per configuration

# %%
keys = [c for c in ("method", "two_eps", "p_eq5") if c in table and table[c].notna().any()]
display(table.groupby(keys, dropna=False)[["clean", "cra", "K_f", "K_hf"]].mean())
