"""A CT-like pelvis phantom, so that the CT pipeline runs without patient data. DEMO DATA, NOT CLINICAL.

The thesis' data (chapter 2.1) are abdominal/pelvic CT series of cervical-cancer patients with a CTV
delineated, resampled to 72 slices of 256 × 256. The phantom imitates that layout with simple shapes:

=========================  ==========================  ================================================
structure                  HU (before noise)           shape
=========================  ==========================  ================================================
air outside the body       -1000                       —
body (muscle/soft tissue)  40                          elliptic cylinder, slightly varying along z
subcutaneous fat           -100                        outer ring of the body
lungs (lung bases)         -800                        two ellipsoids reaching into the top slices
bones: cortex / marrow     1100 / 750                  two hip bones, sacrum/spine (cortical shell)
bladder                    10                          ellipsoid, anterior, lower half
rectum (gas inside)        30 (gas -900)               tube along z, posterior
target (GTV-like)          60                          two overlapping ellipsoids between bladder and rectum
=========================  ==========================  ================================================

The label (uint8) is 1 on the clinical-target-like volume: the GTV-like region grown by ``margin_mm``
(a Euclidean distance in mm, so the anisotropic spacing is respected), cut back to the body and off bone,
lung, bladder and rectum (as a CTV is edited off organs at risk); 0 elsewhere.

Structures are placed in coordinates relative to the field of view (x, y in [-1, 1], z in [0, 1] from the
first slice to the last), so any shape gives the same anatomy — (16, 64, 64) for tests, (72, 256, 256)
as in the thesis. Axes are LPS with an identity direction: x to the patient's left, y posterior, z
superior (so the lungs sit in the last slices). The seed moves and resizes the target and the organs and
sets the noise (Gaussian, ``noise_hu`` HU). Values are rounded to ``int16`` HU, which every format stores
exactly.

``margin_mm`` default: 10 mm for a 256-voxel-wide field of view at 1 mm, scaled with the field of view's
width (a choice of this phantom, not a number from the thesis).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.formats.volume import Volume

__all__ = ["DEMO_NOTE", "HU", "SMALL_SHAPE", "make_phantom", "phantom_structures", "write_phantom"]

DEMO_NOTE = "synthetic phantom — demo data, not clinical"
SMALL_SHAPE = (16, 64, 64)  # for tests
HU = {
    "air": -1000,
    "lung": -800,
    "fat": -100,
    "soft_tissue": 40,
    "bone_cortex": 1100,
    "bone_marrow": 750,
    "bladder": 10,
    "rectum": 30,
    "rectal_gas": -900,
    "target": 60,
}
# drawing order: a later structure overwrites an earlier one
_ORDER = ("body", "fat", "lung", "bone_marrow", "bone_cortex", "bladder", "rectum", "rectal_gas", "target")
_HU_OF = {
    "body": "soft_tissue",
    "fat": "fat",
    "lung": "lung",
    "bone_marrow": "bone_marrow",
    "bone_cortex": "bone_cortex",
    "bladder": "bladder",
    "rectum": "rectum",
    "rectal_gas": "rectal_gas",
    "target": "target",
}


def _grid(shape: Sequence[int]):
    d, h, w = shape
    z = np.linspace(0.0, 1.0, d, dtype=np.float32)[:, None, None] if d > 1 else np.zeros((1, 1, 1), np.float32)
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[None, :, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, None, :]
    return z, y, x


def _ellipsoid(z, y, x, c, r) -> np.ndarray:
    """Inside the ellipsoid of centre c = (z, y, x) and semi-axes r (relative coordinates)."""
    return ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1.0


def _ellipse(y, x, c, r) -> np.ndarray:
    return ((y - c[0]) / r[0]) ** 2 + ((x - c[1]) / r[1]) ** 2 <= 1.0


def phantom_structures(
    shape: Sequence[int] = (72, 256, 256), *, seed: int = 0, exclusive: bool = False
) -> dict[str, np.ndarray]:
    """The phantom's structures as boolean (D, H, W) masks, plus ``"gtv"`` (the region the label is grown
    from). ``exclusive=False``: each structure whole (the body contains the organs); ``exclusive=True``:
    the voxels where each structure is the one drawn (what the image shows), plus ``"air"``; "gtv" is
    always the whole target."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (D, H, W) with positive sizes, got {shape}")
    rng = np.random.default_rng(seed)

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    z, y, x = _grid(shape)
    full = np.ones(shape, bool)

    # body: an elliptic cylinder, a little wider in the middle of the range
    bulge = 1.0 + 0.05 * np.sin(np.pi * z)
    ax, ay = 0.82 * u(0.95, 1.05) * bulge, 0.58 * u(0.93, 1.07) * bulge
    cy = 0.05 + u(-0.03, 0.03)
    body = _ellipse(y, x, (cy, 0.0), (ay, ax)) & full
    inner = _ellipse(y, x, (cy, 0.0), (ay - u(0.06, 0.09), ax - u(0.06, 0.09))) & full
    fat = body & ~inner

    # lungs: bases reaching into the top (superior) slices
    lz = u(1.0, 1.1)
    lung = np.zeros(shape, bool)
    for side in (-1, 1):
        lung |= _ellipsoid(z, y, x, (lz, cy - 0.02, side * u(0.33, 0.40)), (0.25, 0.33 * ay / 0.58, 0.25))
    lung &= inner

    # bones: two hip bones and the sacrum/spine, cortical shell around marrow (lower 3/4 of the range)
    bone_outer = np.zeros(shape, bool)
    bone_core = np.zeros(shape, bool)
    low = z <= 0.75
    for side in (-1, 1):
        c = (cy + u(-0.04, 0.04), side * u(0.52, 0.58))
        r = (u(0.15, 0.19), u(0.11, 0.14))
        bone_outer |= _ellipse(y, x, c, r) & low
        bone_core |= _ellipse(y, x, c, (r[0] * 0.7, r[1] * 0.7)) & low
    c = (cy + ay * 0.72, u(-0.03, 0.03))
    r = (u(0.08, 0.10), u(0.10, 0.13))
    bone_outer |= _ellipse(y, x, c, r) & full
    bone_core |= _ellipse(y, x, c, (r[0] * 0.65, r[1] * 0.65)) & full
    bone_outer &= inner
    bone_core &= bone_outer
    bone_cortex = bone_outer & ~bone_core

    # bladder (anterior, lower half) and rectum (posterior tube) with a gas pocket
    bladder = (
        _ellipsoid(
            z, y, x, (u(0.18, 0.32), cy - u(0.26, 0.32), u(-0.05, 0.05)), (u(0.16, 0.22), u(0.11, 0.15), u(0.17, 0.23))
        )
        & inner
    )
    rc = (cy + u(0.24, 0.28), u(-0.04, 0.04))
    rectum = _ellipse(y, x, rc, (u(0.055, 0.07), u(0.065, 0.08))) & (z <= 0.65) & inner
    gas = _ellipsoid(z, y, x, (u(0.2, 0.45), rc[0], rc[1]), (0.08, 0.03, 0.035)) & rectum

    # target: two overlapping ellipsoids between bladder and rectum, position and size by seed
    s = u(0.7, 1.3)
    tc = (u(0.35, 0.5), cy + u(-0.04, 0.04), u(-0.08, 0.08))
    tr = (0.16 * s, 0.085 * s, 0.11 * s)
    gtv = _ellipsoid(z, y, x, tc, tr)
    tc2 = (tc[0] + u(-0.08, 0.08), tc[1] + u(-0.02, 0.02), tc[2] + u(-0.07, 0.07))
    gtv |= _ellipsoid(z, y, x, tc2, (tr[0] * 0.7, tr[1] * 0.8, tr[2] * 0.8))
    gtv &= inner & ~bone_outer & ~bladder & ~rectum & ~lung
    if not gtv.any():  # a target must exist even on very coarse grids: the voxel nearest its centre
        d, h, w = shape
        gtv[round(tc[0] * (d - 1)), round((tc[1] + 1) / 2 * (h - 1)), round((tc[2] + 1) / 2 * (w - 1))] = True

    masks = {
        "body": body,
        "fat": fat,
        "lung": lung,
        "bone_marrow": bone_core,
        "bone_cortex": bone_cortex,
        "bladder": bladder,
        "rectum": rectum,
        "rectal_gas": gas,
        "target": gtv,
    }
    if exclusive:
        owner = _owner(masks, shape)
        masks = {name: owner == k for k, name in enumerate(("air", *_ORDER))}
    masks["gtv"] = gtv
    return masks


def _owner(masks: dict[str, np.ndarray], shape) -> np.ndarray:
    """Index (0 = air, k = _ORDER[k-1]) of the structure drawn at each voxel: a later one wins."""
    owner = np.zeros(shape, np.uint8)
    for k, name in enumerate(_ORDER, 1):
        owner[masks[name]] = k
    return owner


def _default_margin(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return 10.0 * (shape[2] * spacing[2]) / 256.0


def make_phantom(
    shape: Sequence[int] = (72, 256, 256),
    spacing: Sequence[float] = (3.0, 1.0, 1.0),
    *,
    seed: int = 0,
    noise_hu: float = 8.0,
    margin_mm: float | None = None,
) -> tuple[Volume, Volume]:
    """(image in HU, int16; label, uint8 1 = target with margin) of one phantom case. Demo data."""
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    masks = phantom_structures(shape, seed=seed)
    lut = np.array([HU["air"], *(HU[_HU_OF[name]] for name in _ORDER)], np.float32)
    image = lut[_owner(masks, shape)]
    rng = np.random.default_rng([seed, 1])
    if noise_hu > 0:
        image += rng.normal(0.0, noise_hu, shape).astype(np.float32)
    image = np.clip(np.round(image), -1024, 3071).astype(np.int16)

    margin = _default_margin(shape, spacing) if margin_mm is None else float(margin_mm)
    gtv = masks["gtv"]
    ctv = gtv.copy()
    if margin > 0:
        idx = np.argwhere(gtv)
        pad = [int(np.ceil(margin / sp)) + 1 for sp in spacing]
        lo = np.maximum(idx.min(0) - pad, 0)
        hi = np.minimum(idx.max(0) + pad + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        dist = ndimage.distance_transform_edt(~gtv[box], sampling=spacing)
        ctv[box] = dist <= margin
    organs = masks["bone_marrow"] | masks["bone_cortex"] | masks["lung"] | masks["bladder"] | masks["rectum"]
    ctv &= masks["body"] & ~masks["fat"] & ~organs
    ctv |= gtv

    _, h, w = shape
    origin = (-(w - 1) / 2 * spacing[2], -(h - 1) / 2 * spacing[1], 0.0)  # (x, y, z) LPS: the couch axis through 0
    meta = {
        "demo": True,
        "description": DEMO_NOTE,
        "seed": seed,
        "margin_mm": margin,
        "noise_hu": noise_hu,
        "generator": "medseg.data.phantom",
    }
    img = Volume(image, spacing, origin, np.eye(3), "CT", dict(meta))
    lab = img.with_array(ctv.astype(np.uint8), modality=None, meta={"kind": "label"})
    return img, lab


def write_phantom(
    out_dir: str | Path,
    *,
    n: int = 4,
    formats: Sequence[str] = ("dicom", "nifti", "hdf5"),
    shape: Sequence[int] = (72, 256, 256),
    spacing: Sequence[float] = (3.0, 1.0, 1.0),
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> list[dict]:
    """Write ``n`` phantom cases (seeds ``seed``, ``seed+1``...) into ``out_dir`` and a ``manifest.json``:

    ``dicom/case_000/`` (CT series) + ``dicom/case_000_label.nii.gz`` (the label on the series' grid);
    ``nifti/case_000_image.nii.gz`` + ``nifti/case_000_label.nii.gz``; ``hdf5/case_000.h5`` (image + label).
    Every file is written atomically and the manifest last. Returns the manifest's case entries.
    This is the body of ``medseg data phantom OUT_DIR [--n N] [--shape D H W] [--formats ...] [--seed S]``.
    """
    from medseg.formats.dicom import write_dicom_series
    from medseg.formats.hdf5 import write_hdf5_volume
    from medseg.formats.nifti import write_nifti
    from medseg.formats.volume_files import write_label_like
    from medseg.progress import Progress

    unknown = set(formats) - {"dicom", "nifti", "hdf5"}
    if unknown or not formats:
        raise ValueError(f"formats must be some of dicom, nifti, hdf5; got {list(formats)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in Progress(range(n), desc="phantom", unit="case", disable=not progress):
        name = f"case_{i:03d}"
        img, lab = make_phantom(shape, spacing, seed=seed + i)
        files: dict[str, str] = {}
        if "dicom" in formats:
            series = write_dicom_series(
                img,
                out_dir / "dicom" / name,
                overwrite=overwrite,
                series_description=f"medseg phantom {name} (demo, not clinical)"[:64],
                template=_phantom_template(name),
            )
            files["dicom"] = str(series.relative_to(out_dir))
            files["dicom_label"] = str(
                write_label_like(lab.array, img, out_dir / "dicom" / f"{name}_label.nii.gz").relative_to(out_dir)
            )
        if "nifti" in formats:
            files["nifti_image"] = str(
                write_nifti(img, out_dir / "nifti" / f"{name}_image.nii.gz").relative_to(out_dir)
            )
            files["nifti_label"] = str(
                write_nifti(lab, out_dir / "nifti" / f"{name}_label.nii.gz", label=True).relative_to(out_dir)
            )
        if "hdf5" in formats:
            files["hdf5"] = str(write_hdf5_volume(img, out_dir / "hdf5" / f"{name}.h5", label=lab).relative_to(out_dir))
        cases.append(
            {
                "case": name,
                "seed": seed + i,
                "shape": list(img.shape),
                "spacing": list(img.spacing),
                "target_voxels": int(lab.array.sum()),
                "target_ml": round(float(lab.array.sum()) * float(np.prod(img.spacing)) / 1000.0, 2),
                "files": files,
            }
        )
    manifest = {
        "description": DEMO_NOTE,
        "demo": True,
        "clinical": False,
        "generator": "medseg.data.phantom",
        "hu": HU,
        "label": {"0": "background", "1": "target with margin (CTV-like)"},
        "shape": [int(s) for s in shape],
        "spacing": [float(s) for s in spacing],
        "cases": cases,
    }
    path = out_dir / "manifest.json"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return cases


def _phantom_template(name: str):
    import pydicom

    ds = pydicom.Dataset()
    ds.PatientName = "PHANTOM^DEMO"
    ds.PatientID = f"PHANTOM-{name}"
    ds.StudyDescription = "synthetic phantom - demo data, not clinical"
    ds.BodyPartExamined = "PELVIS"
    return ds
