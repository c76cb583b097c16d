"""Every notebook runs top to bottom in a real Jupyter kernel (nbclient), so none of them can rot.

Each notebook gets a fresh kernel and an empty working directory. The notebooks keep their own
settings small (the small demo catalog, a few epochs), so this module stays within its time budget.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(notebook: Path, tmp_path: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code_cells)  # every cell ran (an error would have raised above)
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_the_notebooks_are_there() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "your_own_data", "distributed_and_tuning", "serving",
                                           "keras_fit"}
