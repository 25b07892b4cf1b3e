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
# Rendered per target (`snakemake table2`, `snakemake fig5`, ...) with papermill from the target's CSV. Rows
# whose method is not implemented show the paper's values marked "paper value, not reproduced".

# %% tags=["parameters"]
target = "table2"
table_csv = "results/paper/tables/table2.csv"
scale = "paper"

# %%
import pandas as pd
from IPython.display import Markdown, display

table = pd.read_csv(table_csv)
display(Markdown(f"## {target} (scale `{scale}`)"))
if scale != "paper":
    display(Markdown(f"**Built at scale '{scale}'**: not comparable with the paper without this caveat."))
display(table)

# %% [markdown]
# ## Differences ours - paper (rows with runs)

# %%
diff_cols = [c for c in table.columns if c.endswith("_diff")]
if diff_cols and "status" in table:
    built = table[table["status"] != "paper value, not reproduced"]
    display(built[[c for c in table.columns if not c.endswith(("_n", "_std"))][:4] + diff_cols])
else:
    display(Markdown("No comparable columns in this table."))
