"""The model artifact: a trained model as a folder of data, below both training and inference.

* :mod:`~medseg.artifact.model_folder` — ``model.safetensors`` + ``model.json``: save, read, check, load.
* :mod:`~medseg.artifact.meta` — what ``model.json`` records about a config (architecture settings,
  preprocessing, sliding window).
* :mod:`~medseg.artifact.device` — device resolution.
* :mod:`~medseg.artifact.files` — atomic JSON / safetensors writes.

Training writes artifacts; inference, evaluation and the server read them without importing the trainer
(as nnU-Net's predictor and MONAI bundles do).
"""

from medseg.artifact.device import resolve_device
from medseg.artifact.files import dump_json
from medseg.artifact.meta import model_kwargs, model_meta, sliding_window_settings
from medseg.artifact.model_folder import (
    MODEL_META,
    MODEL_WEIGHTS,
    check_model_meta,
    load_model,
    read_model_meta,
    save_model,
)

__all__ = [
    "MODEL_META",
    "MODEL_WEIGHTS",
    "check_model_meta",
    "dump_json",
    "load_model",
    "model_kwargs",
    "model_meta",
    "read_model_meta",
    "resolve_device",
    "save_model",
    "sliding_window_settings",
]
