"""Notebook hygiene and execution helpers.

    python -m hopedetect.notebooks strip notebooks/*.ipynb   # remove outputs before committing
    python -m hopedetect.notebooks check notebooks/*.ipynb   # non-zero if any notebook has outputs
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def notebook_outputs(path: str | Path) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    nb = nbformat.read(str(path), as_version=4)
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def strip_outputs(path: str | Path) -> bool:
    """Strip outputs/execution counts in place; True if the file changed."""
    nb = nbformat.read(str(path), as_version=4)
    changed = False
    for c in nb.cells:
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            c.outputs, c.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, str(path))
    return changed


def parameters_cell(path: str | Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    for c in nb.cells:
        if "parameters" in c.get("metadata", {}).get("tags", []):
            return c.source
    raise ValueError(f"{path}: no cell tagged 'parameters'")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("strip", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    bad = 0
    for p in argv[1:]:
        if argv[0] == "strip":
            if strip_outputs(p):
                print(f"stripped {p}")
        elif cells := notebook_outputs(p):
            print(f"{p}: outputs in cells {cells}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
