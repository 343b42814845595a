"""NIfTI volumes (:func:`read_nifti`, :func:`write_nifti`, :func:`nifti_shape`).

nibabel arrays are (x, y, z) with a RAS affine; here they are transposed to (z, y, x) and the affine
turned to LPS (diag(-1, -1, 1)), without reorienting any voxel. Written with sform and qform code 1
(scanner). Labels are written as ``uint8``. The header's shape and data type are checked before the
data are read (voxel budget; complex and RGB data refused rather than cast), and voxel sizes that are
zero, negative or NaN are refused (nibabel would silently set 0 and -1 to 1). Files are written under a
temporary name beside the destination and renamed at the end.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.atomic import atomic_file, label_uint8
from medseg.formats.limits import check_voxels, exception_text
from medseg.formats.volume import Volume, check_dtype, validate_volume

__all__ = ["NIFTI_SUFFIXES", "nifti_shape", "read_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _nifti_suffix(path: Path) -> str | None:
    """The NIfTI suffix ``path`` ends with (any case), None for another name."""
    name = path.name.lower()
    return next((s for s in NIFTI_SUFFIXES if name.endswith(s)), None)


def _nifti_header(path: Path):
    """The nibabel image (its data stay on disk) and the header as stored, before nibabel's silent fixes
    (on loading it sets zero voxel sizes to 1 and negative ones to their absolute value)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    if not path.exists():
        raise DataValidationError(path, "not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = nib.load(str(path))
            with ImageOpener(str(path)) as fh:
                stored = type(img.header).from_fileobj(fh, check=False)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types (ImageFileError, HeaderDataError, EOFError...)
        raise DataValidationError(path, f"not a readable NIfTI file ({exception_text(exc)})") from exc
    return img, stored


def nifti_shape(path: str | Path) -> tuple[int, ...]:
    """The shape (x, y, z, ...) a NIfTI header declares; nothing of the data is read."""
    return tuple(int(n) for n in _nifti_header(Path(path))[0].shape)


def read_nifti(path: str | Path, *, max_voxels: int | None = None) -> Volume:
    """A NIfTI-1/2 file as a Volume: (x, y, z) → (z, y, x), RAS affine → LPS origin/direction/spacing.

    The voxel budget (``max_voxels``) and the data type are checked on the header before the data are read.
    """
    path = Path(path)
    img, stored = _nifti_header(path)
    shape = tuple(int(n) for n in img.shape)
    check_voxels(path, shape, "the NIfTI image", max_voxels)
    try:
        check_dtype(path, img.get_data_dtype(), "the NIfTI image")
        spatial = min(3, len(shape))
        pixdim = np.asarray(stored["pixdim"], float)[1 : 1 + spatial]
        if int(stored["sform_code"]) == 0 and not (np.all(np.isfinite(pixdim)) and np.all(pixdim > 0)):
            raise DataValidationError(
                path, f"voxel sizes (pixdim) {pixdim.tolist()}: each must be a finite positive number"
            )
        affine = np.asarray(img.affine, dtype=float)
        descrip = img.header.get("descrip")
        data = np.asanyarray(img.dataobj)
    except DataValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated data, bad scaling, a header nibabel cannot map...
        raise DataValidationError(path, f"not a readable NIfTI file ({exception_text(exc)})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataValidationError(path, f"a 3D volume is needed; the image is {data.ndim}D with shape {data.shape}")
    if not np.all(np.isfinite(affine)):
        raise DataValidationError(path, f"the affine holds NaN or infinite values: {affine.round(4).tolist()}")
    affine_lps = _LPS_RAS @ affine
    m = affine_lps[:3, :3]
    spacing_xyz = np.linalg.norm(m, axis=0)
    if np.any(spacing_xyz <= 0):
        raise DataValidationError(path, f"degenerate affine (a zero voxel size): {affine.round(4).tolist()}")
    descrip = descrip.item().decode("latin-1", "replace") if descrip is not None else ""
    modality = descrip.split("modality=", 1)[1].split()[0] if "modality=" in descrip else None
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    volume = Volume(
        array,
        (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]),
        tuple(affine_lps[:3, 3]),
        m / spacing_xyz,
        modality or None,
        {"format": "nifti", "source": str(path)},
    )
    return validate_volume(volume, path)


def write_nifti(volume: Volume, path: str | Path, *, label: bool = False) -> Path:
    """Write ``volume`` as NIfTI (``.nii`` or ``.nii.gz``) with its RAS affine; ``label=True`` → uint8."""
    import nibabel as nib

    path = Path(path)
    suffix = _nifti_suffix(path)
    if suffix is None:
        raise DataValidationError(path, "a NIfTI file name ends with .nii or .nii.gz")
    data = label_uint8(volume.array, path) if label else np.asarray(volume.array)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    affine = volume.affine_ras()
    img = nib.Nifti1Image(data.transpose(2, 1, 0), affine)
    img.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-orthogonal affine lives in the sform; the qform gets its nearest
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
    img.header["descrip"] = (f"medseg modality={volume.modality}" if volume.modality else "medseg")[:79].encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix) as tmp:
        nib.save(img, str(tmp))
    return path
