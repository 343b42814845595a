"""What ``model.json`` records about a config: the architecture's settings and how to feed the model.

Training writes it (:func:`model_meta`); inference reads the same keys back, so both live here, below both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.config import section_settings

if TYPE_CHECKING:  # only for the annotation; the data layer is never needed to describe a model
    from medseg.data.datasets import SegmentationData


def model_kwargs(cfg: dict) -> dict:
    """The architecture's constructor settings: the ``model`` section plus in/out channels and dimensions."""
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    # 2.5D (data.context_slices k): the slice and its 2k neighbours are the input channels
    context = int(cfg["data"].get("context_slices") or 0) if int(cfg["task"].get("spatial_dims", 2)) == 2 else 0
    kwargs.setdefault("in_channels", 1 + 2 * context)
    kwargs.setdefault("out_channels", len(cfg["task"]["class_names"]))
    kwargs.setdefault("spatial_dims", cfg["task"]["spatial_dims"])
    return kwargs


def sliding_window_settings(section: dict | None) -> dict | None:
    """``evaluate.sliding_window`` (from a config, a model.json or a caller) checked by the config schema and
    completed with its defaults; None when no ``roi_size`` is set (whole images or volumes). 2D and 3D alike:
    the roi has as many values as the model has spatial axes (the whole config's check)."""
    if not section or section.get("roi_size") is None:
        return None
    s = section_settings("evaluate.sliding_window", section)
    return {
        "roi_size": [int(v) for v in s["roi_size"]],
        "overlap": float(s["overlap"]),
        "sw_batch_size": int(s["sw_batch_size"]),
        "mode": s["mode"],
    }


def model_meta(cfg: dict, data: SegmentationData | None = None, **extra) -> dict:
    """What ``model.json`` records: enough to rebuild the model and feed it like in training."""
    normalize = cfg["data"].get("normalize", "range")
    intensity = "dtype range to [0, 1] (uint8 / 255, uint16 / 65535)"
    if normalize == "zscore":
        intensity += ", then per image (x - mean) / std"
    elif normalize == "minmax":
        intensity += ", then per image (x - min) / (max - min)"
    meta = {
        "model": {"name": cfg["model"]["name"], "kwargs": model_kwargs(cfg)},
        "task": cfg["task"],
        # 2D: how an image is fed (data.size, data.normalize: medseg.data.transforms.normalize_input) and the
        # sliding window it is validated and predicted with; the predictor reads both back from here.
        "preprocessing": {
            "size": cfg["data"]["size"],
            "image_pad_value": cfg["data"]["image_pad_value"],
            "normalize": normalize,
            "intensity": intensity,
            # resize: images scaled to size (not padded) and predictions scaled back; context: the
            # 2.5D input (k neighbouring slices of the scan on each side, stride apart)
            "resize": bool(cfg["data"].get("resize", False)),
            "context_slices": int(cfg["data"].get("context_slices") or 0),
            "context_stride": int(cfg["data"].get("context_stride") or 1),
            # a pair model trained on crops showing the pair alone: the metaphase pipeline isolates its crops so
            "pair_isolate_px": cfg["data"].get("mfish_pair_isolate_px"),
        },
        # evaluate.tta: whether prediction averages flipped/rotated copies by default (the planner turns it on, as
        # nnU-Net mirrors at prediction; `medseg predict --tta/--no-tta` overrides it)
        "evaluate": {
            "sliding_window": sliding_window_settings(cfg["evaluate"].get("sliding_window")),
            "tta": tta_setting(cfg["evaluate"].get("tta", False)),
        },
    }
    if int(cfg["task"].get("spatial_dims", 2)) == 3:
        # Volumes are fed clipped, normalised and resampled (transforms3d.preprocess_volume) and predicted with
        # the sliding window of `evaluate`: record both so a served model preprocesses exactly like training.
        from medseg.data.transforms3d import preprocess_settings

        meta["preprocessing"] = {"volume": preprocess_settings(cfg)}
    if data is not None:
        meta["data"] = {
            "source": data.source,
            "fingerprint": data.fingerprint,
            "synthesized": data.synthesized,
            "n_images": len(data),
        }
    meta.update(extra)
    return meta


__all__ = ["model_kwargs", "model_meta", "sliding_window_settings"]


def tta_setting(value, asked: bool | str | None = None) -> bool | str:
    """The test-time augmentation to use: ``asked`` (``--tta`` / ``--no-tta``; None: as recorded), given the
    recorded ``evaluate.tta`` ``value`` — ``"flips"`` (flips only), else true / false. Asking for TTA of a model
    that records ``"flips"`` gives its flips: its input has an orientation that a quarter turn would break."""
    recorded = "flips" if value == "flips" else bool(value)
    if asked is None:
        return recorded
    return "flips" if asked is True and recorded == "flips" else asked
