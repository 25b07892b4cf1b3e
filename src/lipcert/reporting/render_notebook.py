"""Render a jupytext percent-format notebook with papermill (``-k python3``) to .ipynb and HTML.

Steps: jupytext converts ``notebooks/<name>.py`` (with a cell tagged ``parameters``) to a notebook
with the python3 kernelspec; papermill injects the parameters and executes it; nbconvert writes HTML.
Outputs are written next to temporary names and moved into place only when everything succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["render", "main"]


def render(notebook: Path, out_ipynb: Path, out_html: Path, parameters: dict[str, str]) -> None:
    """Execute ``notebook`` with ``parameters`` into ``out_ipynb`` and export ``out_html``."""
    import jupytext
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    out_ipynb.parent.mkdir(parents=True, exist_ok=True)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    env = {"MPLBACKEND": "Agg", "IPYTHONDIR": tempfile.mkdtemp(prefix="ipython-")}
    os.environ.update(env)
    with tempfile.TemporaryDirectory(dir=out_ipynb.parent) as tmp:
        src = Path(tmp) / "source.ipynb"
        executed = Path(tmp) / "executed.ipynb"
        nbformat.write(nb, src)
        papermill.execute_notebook(str(src), str(executed), parameters=parameters, kernel_name="python3",
                                   language="python", cwd=os.getcwd(), progress_bar=False)
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
        html_tmp = Path(tmp) / "out.html"
        html_tmp.write_text(body)
        os.replace(executed, out_ipynb)
        os.replace(html_tmp, out_html)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lipcert.reporting.render_notebook", description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebook", required=True)
    ap.add_argument("--out-ipynb", required=True)
    ap.add_argument("--out-html", required=True)
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = ap.parse_args(argv)
    render(Path(args.notebook), Path(args.out_ipynb), Path(args.out_html), dict(args.p))
    print(f"rendered {args.notebook} -> {args.out_html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
