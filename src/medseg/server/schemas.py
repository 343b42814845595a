"""The API's request and response bodies (pydantic models), as ``/openapi.json`` describes them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from medseg.server import auth


class LoginBody(BaseModel):
    username: str
    password: str


class UserOut(BaseModel):
    id: int
    username: str
    is_admin: bool


class LoginOut(BaseModel):
    token: str = Field(description="Also set as the HttpOnly cookie; send as 'Authorization: Bearer <token>'")
    user: UserOut
    expires_in: int = Field(description="Seconds until the session ends")


class NewUserBody(BaseModel):
    username: str
    password: str
    is_admin: bool = False


class PasswordChangeBody(BaseModel):
    current_password: str
    new_password: str = Field(description=f"At least {auth.MIN_PASSWORD} characters")


class PasswordBody(BaseModel):
    password: str = Field(description=f"At least {auth.MIN_PASSWORD} characters")


class RerunBody(BaseModel):
    model: str = Field(description="A model id from GET /api/models")


class ClassOut(BaseModel):
    value: int
    name: str
    colour: str


class ChannelOut(BaseModel):
    channel: int = Field(description="The model's output channel (bit c of the label files)")
    name: str
    value: int = Field(
        description="The structure's value in the label files: 2**channel (values add up where structures overlap)"
    )
    colour: str


class ResultChannelOut(ChannelOut):
    layer: str = Field(description="The slice kind of this structure's own layer: put it for {kind} in slice_url")


class ModelOut(BaseModel):
    id: str
    name: str
    version: str
    spatial_dims: int
    mode: str
    folds: int
    classes: list[ClassOut]
    channels: list[ChannelOut] = Field([], description="A multilabel model's structures (they may overlap)")
    stacks: bool = Field(
        False, description="A 2D model that also segments a volume or a zip of slice images, slice by slice"
    )
    demo: bool
    demo_note: str | None = None
    demo_reason: str | None = None
    modality: str | None = Field(
        None,
        description="The modality the model needs (an input recording another is "
        "refused), or null when its model.json says nothing",
    )
    instances: bool = Field(
        False,
        description="A metaphase model (background / chromosome / overlap): its results on "
        "an image also give every chromosome as its own instance",
    )
    pair_model: dict | None = Field(
        None,
        description="{name, version} of the pair model that splits crossings of two "
        "chromosomes (medseg serve --pair-model); null: kept whole",
    )
    karyotype_model: dict | None = Field(
        None,
        description="{name, version, vote} of the karyotyping model that gives "
        "every chromosome instance its class (medseg serve "
        "--karyotype-model); null: none",
    )


class ResultOut(BaseModel):
    id: str
    study_id: str
    model: dict
    input_sha256: str
    status: str = Field(description="queued | running | done | failed")
    progress: float
    error: str | None = None
    attempts: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    n_slices: int | None = None
    classes: list[ClassOut] = []
    multilabel: bool = Field(
        False,
        description="Structures may overlap: the label files are bit-packed "
        "(summary.label_encoding) and each structure has its own layer",
    )
    channels: list[ResultChannelOut] = Field([], description="A multilabel result's structures, once done")
    summary: dict | None = None
    instances: dict | None = Field(
        None,
        description="A metaphase result's chromosome instances, once done: n, counts "
        "(alone, split by the pair model, kept whole and why), pair_model, "
        "note, karyotype_model (with one: class_counts, unclassified, "
        "classes_text), statuses (counts per status, the estimate of "
        "chromosomes, text: the headline, warning when far from 46), "
        "karyogram (true: the karyogram download); the "
        "per-chromosome records at table_url",
    )
    warnings: list[str] = Field(
        [],
        description="What to check about this result (e.g. an input that records no "
        "modality for a CT model); once done",
    )
    slice_url: str = Field(
        description="Template: replace {k} (0-based) and {kind} (image | label | reference, or "
        "label-<c> for structure c of a multilabel result, or instances for a "
        "result with chromosome instances)"
    )
    volume_url: str | None = Field(
        None,
        description="Once done: the manifest of the whole image and label arrays "
        "(shape, encoding, colours, URLs), for drawing slices client-side",
    )
    downloads: dict[str, str] = Field(description="Format → URL, once done")


class StudyOut(BaseModel):
    id: str
    name: str
    kind: str
    input_format: str
    input_files: list[str]
    input_sha256: str
    input_bytes: int
    shape: list[int]
    spacing: list[float | None] | None = Field(
        None, description="(z, y, x) mm; z null for a stack of slice images (thickness unknown)"
    )
    modality: str | None = None
    window: dict
    created_at: str
    reference_file: str | None = None
    has_reference: bool
    status: str | None = Field(None, description="Status of the latest result")
    progress: float | None = None
    results: list[ResultOut]


class HealthOut(BaseModel):
    status: str
    version: str  # public anyway in /openapi.json
    models: int | None = Field(None, description="Signed-in callers only")
    jobs: dict[str, int] | None = Field(None, description="Results per status, all users; signed-in callers only")


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One PNG/TIFF image, NIfTI or HDF5 volume or zipped DICOM series, or "
                            "the files of one DICOM series; for a model that segments stacks of slices also a zip of "
                            "the PNG/TIFF slices of one scan (slice_SSSS_W_H_pw_ph.png names: ordered by "
                            "SSSS, spacing from the name; other names: natural order)",
                        },
                        "reference": {
                            "type": "string",
                            "format": "binary",
                            "description": "Optional reference label on the same grid (PNG/TIFF, NIfTI, HDF5)",
                        },
                        "model": {
                            "type": "string",
                            "description": "Model id (GET /api/models); optional with one model",
                        },
                    },
                }
            }
        },
    }
}
