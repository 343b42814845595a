"""A cell's karyotype as the M-FISH set records it (ISCN, e.g. ``45,XY,t(9;22)``), and which chromosome classes
its structural rearrangements involve.

Why it matters for karyotyping: the M-FISH label map colours every pixel by the chromosome its DNA comes from. In a
tumour cell with a translocation ``t(5;16)`` the two derivative chromosomes are each painted partly 5 and partly
16, so a "chromosome 16" of the label map may be a piece of 16 on the body of a 5: its length, centromere and
DAPI bands are not those of a 16, and no classifier of the DAPI image can give it the label map's class. The held-out
slides hold such cells (A20: ``44,X,-5,-14,+18,Ins(11;8),t(5;16),…``; V27: ``t(3;13),t(8;3),t(16;8)``), so a
karyotype report shows accuracy on them apart from the rest (:mod:`medseg.evaluation.karyotype_cells`).

The rule (:func:`rearranged_classes`): a class is *in a rearrangement* of a karyotype when it is named inside
the first parentheses of a structural code — ``t`` (translocation), ``der``, ``ins``, ``inv``, ``dup``, ``del``,
``r`` (ring), ``i`` (isochromosome), ``dic``, ``idic``, ``add``, ``rob`` — e.g. ``t(9;22)(q34;q11)`` gives 9 and
22 (the second parentheses, the bands, are not read). Numerical changes (``-5``, ``+18``) rearrange nothing: a
lost or extra chromosome is whole. Every chromosome of such a class in such a cell is counted, not only the
derivatives (which copy is the derivative the label map does not say), so the count is an upper bound.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CASE_INFO", "STRUCTURAL_CODES", "rearranged_classes", "read_case_karyotype"]

CASE_INFO = "Case Info"  # the file in each M-FISH folder that holds its karyotype
STRUCTURAL_CODES = ("t", "der", "ins", "inv", "dup", "del", "r", "i", "dic", "idic", "add", "rob")
_STRUCTURAL = re.compile(r"(?<![a-z])(?:" + "|".join(STRUCTURAL_CODES) + r")\(([^()]*)\)", re.IGNORECASE)
_ISCN = re.compile(r"\d{2},[^\s,]*(?:,[ \t]*[^\s,]+)*")  # a space may follow a comma: "44,XX,-8, -13"
_TOKEN = re.compile(r"\??(X|Y|\d{1,2})(?![0-9])")
_CLASS = {"X": 23, "Y": 24}


def rearranged_classes(karyotype: str | None) -> frozenset[int]:
    """The classes (1–22, 23 = X, 24 = Y) named by the structural rearrangements of the ISCN ``karyotype``
    (see the module docstring); none for a normal or only numerically abnormal cell, or for no karyotype."""
    out: set[int] = set()
    for group in _STRUCTURAL.findall(karyotype or ""):
        for token in re.split(r"[;,]", group):
            found = _TOKEN.match(token.strip().upper())  # "17", "X", "?13", "17q" (an arm)
            if found and found.group(1) in _CLASS:
                out.add(_CLASS[found.group(1)])
            elif found and 1 <= int(found.group(1)) <= 22:
                out.add(int(found.group(1)))
    return frozenset(out)


def read_case_karyotype(folder: str | Path) -> str | None:
    """The ISCN karyotype in the ``Case Info`` file of an M-FISH slide folder (``46,XY``; None without the file
    or an ISCN string in it). The published files carry stray bytes (NULs, the rest of a lab form after the
    karyotype), so the first ``NN,…`` run of the file is taken."""
    files = sorted(p for p in Path(folder).glob(CASE_INFO + "*") if p.is_file())
    if not files:
        return None
    text = files[0].read_bytes()[:4096].decode("latin-1").replace("\x00", " ")
    found = _ISCN.search(text)
    if not found:
        return None
    # what follows the karyotype without a space (a lab form's words) is not part of it
    return re.sub(r"(?<=\))[A-Za-z].*$", "", re.sub(r",\s+", ",", found.group(0))).rstrip(",")
