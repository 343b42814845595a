"""What ``medseg predict`` is given, checked before anything is read.

A file is a 2D image or a volume by its name (:func:`check_input_kind`). A folder is what its files are:
DICOM by their bytes (:func:`medseg.formats.dicom_headers.is_dicom_file`: PACS exports name slices
``IM000012`` or by UID, with no suffix), images by their suffix. A folder of images is predicted image by
image, in natural name order (``img2`` before ``img10``); a folder of DICOM files is one series (3D). A
folder mixing both, or holding neither, is refused with what was found in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg.data.folder import IMAGE_SUFFIXES
from medseg.data.splits import natural_key
from medseg.errors import DataValidationError
from medseg.formats.dicom_headers import is_dicom_file

# What `predict` reads as a 2D image: the training formats, and JPEG (Pillow reads it as it reads PNG).
PREDICT_IMAGE_SUFFIXES = (*IMAGE_SUFFIXES, ".jpg", ".jpeg")
_VOLUME_NAMES = {"nifti": "a NIfTI volume", "hdf5": "an HDF5 volume", "dicom": "a DICOM series"}
_SHOWN = 4  # file names quoted in a message


def check_input_kind(path: str | Path, spatial_dims: int, model: str | Path = "the model") -> None:
    """Refuse an input of the other dimensionality than the model before it is read, so the message says so
    instead of a reader's "may be corrupt": a volume for a 2D model (by its name; a file named like DICOM, or
    not at all, by its bytes) or an image for a 3D one."""
    from medseg.formats.volume_files import volume_format

    path = Path(path)
    is_image = path.suffix.lower() in PREDICT_IMAGE_SUFFIXES
    if spatial_dims == 2 and not is_image:
        try:
            fmt = volume_format(path)
        except DataValidationError:
            return  # neither an image nor a volume by its name: the image reader names the problem
        if fmt == "dicom" and path.is_file() and path.suffix.lower() != ".zip" and not is_dicom_file(path):
            return  # DICOM by its name only (none, or .dcm), not by its bytes: the image reader names the problem
        what = _VOLUME_NAMES[fmt]
        raise DataValidationError(
            path,
            f"this is {what} (3D), and {model} segments 2D images (PNG/TIFF/JPEG); give "
            "a 2D image, or a 3D model for volumes",
        )
    if spatial_dims == 3 and is_image:
        raise DataValidationError(
            path,
            f"this is a 2D image, and {model} segments 3D volumes (NIfTI, HDF5, DICOM "
            "series); give a volume, or a 2D model for images",
        )


@dataclass
class FolderContents:
    """The entries directly in a folder (hidden ones left out), each list in natural name order."""

    images: list[Path] = field(default_factory=list)
    dicom: list[Path] = field(default_factory=list)
    other: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        """What was found, e.g. "3 images (a.png, b.png, c.png) and 2 DICOM files (IM1, IM2)"."""
        parts = [
            _count(self.images, "image"),
            _count(self.dicom, "DICOM file"),
            _count(self.other, "other file"),
            _count(self.folders, "folder"),
        ]
        parts = [p for p in parts if p]
        return " and ".join(parts) if parts else "nothing"


def _count(paths: Sequence[Path], what: str) -> str:
    if not paths:
        return ""
    names = ", ".join(p.name for p in paths[:_SHOWN]) + (
        f", … {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
    )
    return f"{len(paths)} {what}{'s' if len(paths) > 1 else ''} ({names})"


def folder_contents(folder: str | Path) -> FolderContents:
    """Sort the entries of ``folder``: DICOM files by their bytes first (a DICOM slice may carry any name), then
    images by suffix (:data:`PREDICT_IMAGE_SUFFIXES`), the rest as other files and subfolders."""
    found = FolderContents()
    for entry in sorted(Path(folder).iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.folders.append(entry)
        elif is_dicom_file(entry):
            found.dicom.append(entry)
        elif entry.suffix.lower() in PREDICT_IMAGE_SUFFIXES:
            found.images.append(entry)
        else:
            found.other.append(entry)
    return found


def prediction_inputs(
    paths: Sequence[str | Path], spatial_dims: int, model: str | Path = "the model"
) -> tuple[list[Path], list[str]]:
    """The inputs to predict one by one, and notes for the user: each file checked by
    :func:`check_input_kind`; a folder of 2D images (2D model) becomes its images, a folder of DICOM files (3D
    model) stays one series. Raises :class:`DataValidationError` naming the folder, and what it holds, when it
    mixes images and DICOM files, holds neither, or is of the other dimensionality than the model."""
    inputs: list[Path] = []
    notes: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir():
            check_input_kind(path, spatial_dims, model)
            inputs.append(path)
            continue
        found = folder_contents(path)
        if found.images and found.dicom:
            raise DataValidationError(
                path,
                f"this folder mixes 2D images and DICOM files: {found.describe()}; give a "
                "folder of images or the files of one DICOM series, not both",
            )
        if found.dicom:
            if spatial_dims == 2:
                raise DataValidationError(
                    path,
                    f"this is a DICOM series (3D; {found.describe()}, DICOM by their "
                    f"bytes), and {model} segments 2D images (PNG/TIFF/JPEG); give 2D "
                    "images, or a 3D model for volumes",
                )
            inputs.append(path)
        elif found.images:
            if spatial_dims == 3:
                raise DataValidationError(
                    path,
                    f"this is a folder of 2D images ({found.describe()}), and {model} "
                    "segments 3D volumes (NIfTI, HDF5, DICOM series); give a volume, or a "
                    "2D model for images",
                )
            inputs += found.images
            if found.other:
                notes.append(f"{path}: {_count(found.other, 'other file')} not predicted (not PNG/TIFF/JPEG)")
        elif spatial_dims == 3 and found.folders:
            inputs.append(path)  # a DICOM export's root: the series reader searches its subfolders
        else:
            raise DataValidationError(
                path,
                f"this folder holds no PNG/TIFF/JPEG image and no DICOM file (found "
                f"{found.describe()}); give a folder of 2D images or of one DICOM series",
            )
    return inputs, notes


__all__ = ["PREDICT_IMAGE_SUFFIXES", "FolderContents", "check_input_kind", "folder_contents", "prediction_inputs"]
