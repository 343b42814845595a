"""The import graph points one way: each package imports only packages of lower layers.

Layers, bottom to top (a package may import its own modules and anything below it, never sideways within
its layer nor upward):

0. ``errors``, ``paths``, ``palette``, ``progress`` — leaves
1. ``config_schema`` (the typed schema), then ``config`` (loading, sources)
2. ``formats`` — file formats (DICOM, NIfTI, HDF5, PNG/TIFF, zip safety, limits, atomic writing)
3. ``data``, ``models``, ``losses``, ``metrics``
4. ``artifact`` — the model folder (model.json + safetensors), device resolution; ``planning`` (`medseg plan`)
5. ``inference``
6. ``evaluation``, ``training``
7. ``server``, ``experiments`` (``medseg reproduce``: trains and evaluates)
8. ``cli``; 9. ``__main__``

Imports inside functions count as much as those at the top: a lazy import still ties the layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import medseg

PACKAGE = Path(medseg.__file__).resolve().parent
LAYERS = [
    {"__init__", "errors", "paths", "palette", "progress"},
    {"config_schema", "threads"},
    {"config"},
    {"formats"},
    {"data", "models", "losses", "metrics"},
    {"artifact", "planning"},
    {"inference"},
    {"evaluation", "training"},
    {"server", "experiments"},
    {"cli"},
    {"__main__"},  # python -m medseg
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def import_graph() -> dict[str, set[tuple[str, str]]]:
    """package → {(imported medseg package, importing module)} for every module under src/medseg."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        pkg = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "medseg" and len(parts) > 1 and parts[1] != pkg:
                    edges[pkg].add((parts[1], str(rel)))
    return edges


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert packages | modules <= set(LAYER_OF), f"give these a layer: {sorted((packages | modules) - set(LAYER_OF))}"


def test_imports_point_down():
    upward = sorted(
        f"{module} imports medseg.{target} (layer {LAYER_OF[target]} >= {LAYER_OF[pkg]})"
        for pkg, targets in import_graph().items()
        for target, module in targets
        if target in LAYER_OF and LAYER_OF[target] >= LAYER_OF[pkg]
    )
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_loading_a_model_does_not_import_the_trainer():
    # Prediction, evaluation and the server load a model folder through medseg.artifact alone.
    code = (
        "import sys, medseg.inference.predictor, medseg.evaluation.evaluate, medseg.server.registry; "
        "print(sorted(m for m in sys.modules if m.startswith('medseg.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
