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

CLAIMS = {
    "fig4": "**Fig. 4**: CLL vs GloRo for 2*eps in {0.2, 0.3, 0.4, 0.5}. Paper: CLL reaches 100 % CRA at the "
            "true margin 2*eps = 0.3; GloRo has consistently smaller K(h o f) and degenerates to a near-linear "
            "boundary for too-large margins.",
    "figD2": "**Fig. D2**: CLL at the true margin 2*eps = 0.3 for printed p from 0.75 to 1e-4 (eq. (5) p = "
             "printed/2). Paper: high slack gives overly smooth boundaries; p = 1e-4 nearly reaches perfect CRA.",
}
display(Markdown(CLAIMS.get(target, target)))
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
