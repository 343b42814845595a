"""Published overlapping-chromosome results (Pommier data set), as data, each row with its source.

Numbers are copied exactly as printed in the papers' text (``shared/papers/*.txt``). Units: IoU, Dice,
precision, recall, FNR, FPR and accuracies in **percent**; ``hausdorff`` in pixels; ``time_ms`` in ms per
image; ``params`` as a count. A metric the paper does not give is ``None``.

One key set for all papers, with the definitions spelled out because the papers differ:

* ``overlap_iou`` -- IoU of the overlap class (RSE "IoU", ARMS "IoU", AMFL Table III "Class 3").
* ``alpha_iou`` / ``beta_iou`` with ``alpha_beta_definition``:
  ``"non_overlap_region"`` (RSE IoU1/IoU2, AMFL Table III classes 1/2: classes 1 and 2 of the label map) or
  ``"complete_chromosome"`` (ARMS "Chrom α/β IoU": α = classes {1, 3}, β = {2, 3}).
* ``accuracy`` with ``accuracy_definition``, named after the key of ``SegmentationMetrics.aggregate()``
  that computes the same thing: ``"foreground_accuracy"`` (RSE Eq. 10: chromosome vs background,
  (TP+TN)/ALL), ``"derived_accuracy"`` (ARMS Table 3 note d: average of the binary accuracies of the two
  complete chromosomes, each by Eq. 4), ``"pixel_accuracy"`` (AMFL Eq. 8: multi-class pixel accuracy).
* ``mean_iou``, ``dice``, ``precision``, ``recall``, ``fnr``, ``fpr``, ``hausdorff`` -- AMFL's "average
  scores" (Table II); AMFL does not say over which classes it averages.
* ``time_ms`` (GPU unless ``time_device`` says otherwise), ``time_ms_cpu`` (AMFL Table IV), ``params``.

The rows of other groups that a paper quotes (Hu et al., Saleh et al., Sun et al.) are kept as that paper
prints them, with the definition that paper states; the same Hu et al. numbers (88.20 / 94.40) appear as
non-overlap IoU in RSE and AMFL and as complete-chromosome IoU in ARMS Table 6.
"""

from __future__ import annotations

import copy
import re
from typing import Any

__all__ = [
    "ACCURACY_DEFINITIONS",
    "ALPHA_BETA_DEFINITIONS",
    "METRIC_KEYS",
    "PAPERS",
    "PAPER_ROWS",
    "families",
    "reference_rows",
    "rows_from",
]

NON_OVERLAP = "non_overlap_region"
COMPLETE = "complete_chromosome"

ALPHA_BETA_DEFINITIONS = {
    NON_OVERLAP: "IoU of the non-overlap region of each chromosome (label classes 1 and 2)",
    COMPLETE: "IoU of each complete chromosome (α = classes {1, 3}, β = classes {2, 3})",
}
ACCURACY_DEFINITIONS = {
    "foreground_accuracy": "chromosome vs background, (TP+TN)/ALL (RSE Eq. 10)",
    "derived_accuracy": "mean binary accuracy of the two complete chromosomes (ARMS Table 3 note d, Eq. 4)",
    "pixel_accuracy": "multi-class pixel accuracy Σ P_ii / Σ P_ij (AMFL Eq. 8)",
}

METRIC_KEYS = (
    "overlap_iou",
    "alpha_iou",
    "beta_iou",
    "accuracy",
    "mean_iou",
    "dice",
    "precision",
    "recall",
    "fnr",
    "fpr",
    "hausdorff",
    "time_ms",
    "time_ms_cpu",
    "params",
)

PAPERS: dict[str, dict[str, Any]] = {
    "rse_unet": {
        "short": "RSE-UNet",
        "title": "Overlapping Chromosome Segmentation Model Based on Multi-Scale Residual Attention Network",
        "authors": "Junran Wang, Jiamei Ma, Xuedian Zhang",
        "year": 2023,
        "venue": "Hans Publishers (in Chinese)",
        "file": "shared/papers/rse-unet-overlapping-chromosomes.txt",
        "protocol": "5-fold CV on 80 %, 20 % held-out test set (2686 images), 128 x 128 padded, RTX 2080Ti",
    },
    "arms_net": {
        "short": "ARMS Net",
        "title": "ARMS Net: Overlapping chromosome segmentation based on Adaptive Receptive field Multi-Scale network",
        "authors": "Guangjie Wang, Hui Liu, Xianpeng Yi, Jinjun Zhou, Lin Zhang",
        "year": 2021,
        "venue": "Biomedical Signal Processing and Control, doi:10.1016/j.bspc.2021.102811",
        "file": "shared/papers/arms-net-overlapping-chromosomes.txt",
        "protocol": "5-fold CV on 80 %, 20 % held-out test set, 128 x 128 padded, Keras, RTX 2080Ti",
    },
    "amfl": {
        "short": "AMFL",
        "title": "Adversarial Multiscale Feature Learning for Overlapping Chromosome Segmentation",
        "authors": "Liye Mei, Yalan Yu, Yueyun Weng, Xiaopeng Guo, Yan Liu, Du Wang, Sheng Liu, Fuling Zhou, Cheng Lei",
        "year": None,
        "venue": "IEEE (preprint text)",
        "file": "shared/papers/amfl-adversarial-overlapping-chromosomes.txt",
        "protocol": "80/20 split, test set restricted to the 2432 images with overlap, 128 x 128 padded, Tesla P40",
    },
    "ctv_thesis": {
        "short": "CTV thesis",
        "title": "Design and implementation of an automatic CTV delineation system (master's thesis, in Chinese)",
        "authors": None,
        "year": None,
        "venue": "thesis",
        "file": "shared/papers/ctv-delineation-system-thesis.txt",
        "protocol": "Table 2.1: 340 cervical-cancer CT series, 3-fold CV by patient, mean Dice ratio of the folds; "
                    "Table 3.1: JSRT chest radiographs, 165 train / 82 test",
    },
}


def _row(paper: str, table: str, method: str, family: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "paper": paper,
        "source": f"{PAPERS[paper]['short']}, Table {table}",
        "table": table,
        "method": method,
        "model_family": family,
        "variant": None,
        "input_size": None,
        "alpha_beta_definition": None,
        "accuracy_definition": None,
        "time_device": None,
        "note": None,
    }
    row.update({k: None for k in METRIC_KEYS})
    unknown = set(values) - set(row)
    if unknown:  # a typo in the table data below
        raise KeyError(f"unknown reference-row fields {sorted(unknown)}")
    row.update(values)
    return row


def _rse(table: str, method: str, family: str, iou, iou1, iou2, acc, time=None, **extra) -> dict[str, Any]:
    return _row(
        "rse_unet", table, method, family,
        overlap_iou=iou, alpha_iou=iou1, beta_iou=iou2, accuracy=acc, time_ms=time,
        alpha_beta_definition=NON_OVERLAP, accuracy_definition="foreground_accuracy",
        time_device="GPU RTX 2080Ti" if time is not None else None, input_size=128, **extra,
    )


def _arms(table: str, method: str, family: str, iou, a, b, acc, time=None, **extra) -> dict[str, Any]:
    extra.setdefault("input_size", 128)
    return _row(
        "arms_net", table, method, family,
        overlap_iou=iou, alpha_iou=a, beta_iou=b, accuracy=acc, time_ms=time,
        alpha_beta_definition=COMPLETE, accuracy_definition="derived_accuracy",
        time_device="GPU RTX 2080Ti" if time is not None else None, **extra,
    )


def _amfl2(method: str, family: str, acc, dice, iou, recall, precision, fnr, fpr, hd, table: str = "II",
           **extra) -> dict[str, Any]:
    return _row(
        "amfl", table, method, family,
        accuracy=acc, dice=dice, mean_iou=iou, recall=recall, precision=precision, fnr=fnr, fpr=fpr,
        hausdorff=hd, accuracy_definition="pixel_accuracy", input_size=128,
        note="'IoU' etc. are AMFL's average scores over classes (class set not stated); baselines use CE loss",
        **extra,
    )


def _amfl4(method: str, family: str, params_m: float, gpu_ms: float, cpu_ms: float) -> dict[str, Any]:
    return _row(
        "amfl", "IV", method, family,
        params=round(params_m * 1_000_000), time_ms=gpu_ms, time_ms_cpu=cpu_ms, input_size=128,
        time_device="GPU Tesla P40, CPU Xeon E5-2680 v4",
        note=f"params printed as {params_m}M; average runtime per 128 x 128 test image",
    )


_HU_NOTE = "numbers quoted from Hu et al. 2017 (2-pooling U-Net)"

CTV_THESIS_FILE = "shared/papers/ctv-delineation-system-thesis.txt"
THESIS = CTV_THESIS_FILE

# --------------------------------------------------------------------------------------------------------
# Table 3.1 of the thesis, copied exactly (lines 364–389 of shared/papers/ctv-delineation-system-thesis.txt)
# --------------------------------------------------------------------------------------------------------
_T31_CONFIGS = "configs/noisy"


def _t31(line, fraction, n_range, method, lung, heart, clavicle, mean, config):
    return {"line": line, "fraction": fraction, "n_range": n_range, "method": method,
            "values": {"lung": lung, "heart": heart, "clavicle": clavicle, "mean": mean},
            "config": None if config is None else f"{_T31_CONFIGS}/{config}.yaml"}


THESIS_TABLE_3_1 = {
    "source": THESIS,
    "lines": (364, 389),
    "caption": "表 3.1 OCM 和 QAM 作用下的噪声标注分割结果 (segmentation with noisy labels under QAM and OCM)",
    "dataset": "JSRT, 247 chest radiographs resized to 256×256, 165 train / 82 test (line 360)",
    # Columns: 肺部 / 心脏 / 锁骨 / 平均 分割 (lung, heart, clavicle, mean). Line 360 names the three
    # annotations 肋骨 (ribs), 肺部, 心脏; the table's 锁骨 (clavicle) is JSRT's (SCR's) third structure.
    "columns": ("lung", "heart", "clavicle", "mean"),
    # The metric is the Dice ratio: line 393 / Fig. 3.3 ("类均值分割准确率", "Dice Ratio").
    "metric": "dice",
    # Rows: noise fraction (噪声占比) × noise range in pixels (噪声程度) × method (试验方法). 基础方法 = the
    # base method (U-Net + binary cross-entropy, §3.2.1). InvertedNet [31] is a published reference on clean
    # labels, not reproduced. The text (line 362) gives the low range as 0-8; the table prints 1-8.
    # Training settings (line 362): QAM lr 1e-4, λ = 2, batch 32.
    "rows": [
        _t31(367, 0.0, None, "invertednet", 0.972, 0.935, 0.902, 0.936, None),
        _t31(368, 0.0, None, "base", 0.943, 0.941, 0.862, 0.915, "clean_base"),
        _t31(369, 0.0, None, "qam", 0.939, 0.923, 0.831, 0.898, "clean_qam"),
        _t31(370, 0.0, None, "qam_ocm", 0.941, 0.940, 0.852, 0.911, "clean_qam_ocm"),
        _t31(372, 0.25, (1, 8), "base", 0.868, 0.888, 0.538, 0.765, "p25_n1to8_base"),
        _t31(373, 0.25, (1, 8), "qam", 0.925, 0.926, 0.748, 0.866, "p25_n1to8_qam"),
        _t31(374, 0.25, (1, 8), "qam_ocm", 0.936, 0.925, 0.823, 0.895, "p25_n1to8_qam_ocm"),
        _t31(375, 0.50, (1, 8), "base", 0.873, 0.884, 0.539, 0.765, "p50_n1to8_base"),
        _t31(376, 0.50, (1, 8), "qam", 0.922, 0.925, 0.726, 0.857, "p50_n1to8_qam"),
        _t31(377, 0.50, (1, 8), "qam_ocm", 0.936, 0.929, 0.828, 0.895, "p50_n1to8_qam_ocm"),
        _t31(378, 0.75, (1, 8), "base", 0.820, 0.828, 0.512, 0.720, "p75_n1to8_base"),
        _t31(379, 0.75, (1, 8), "qam", 0.898, 0.825, 0.536, 0.753, "p75_n1to8_qam"),
        _t31(380, 0.75, (1, 8), "qam_ocm", 0.937, 0.939, 0.809, 0.895, "p75_n1to8_qam_ocm"),
        _t31(381, 0.25, (5, 13), "base", 0.865, 0.857, 0.422, 0.715, "p25_n5to13_base"),
        _t31(382, 0.25, (5, 13), "qam", 0.893, 0.835, 0.615, 0.781, "p25_n5to13_qam"),
        _t31(383, 0.25, (5, 13), "qam_ocm", 0.935, 0.935, 0.801, 0.890, "p25_n5to13_qam_ocm"),
        _t31(384, 0.50, (5, 13), "base", 0.755, 0.807, 0.393, 0.652, "p50_n5to13_base"),
        _t31(385, 0.50, (5, 13), "qam", 0.828, 0.853, 0.491, 0.714, "p50_n5to13_qam"),
        _t31(386, 0.50, (5, 13), "qam_ocm", 0.942, 0.942, 0.853, 0.912, "p50_n5to13_qam_ocm"),
        _t31(387, 0.75, (5, 13), "base", 0.745, 0.738, 0.381, 0.621, "p75_n5to13_base"),
        _t31(388, 0.75, (5, 13), "qam", 0.770, 0.772, 0.366, 0.636, "p75_n5to13_qam"),
        _t31(389, 0.75, (5, 13), "qam_ocm", 0.938, 0.937, 0.801, 0.892, "p75_n5to13_qam_ocm"),
    ],
    "notes": [
        ("line 404 says QAM without OCM drops on the clavicle 'from 0.862 to 0.366' (75 %, 5-13 px); 0.862 is the "
         "base method's clean clavicle Dice (line 368), QAM's own clean value is 0.831 (line 369)"),
        "line 362 gives the low noise range as 0-8, the table 1-8",
        ("two printed means are not the mean of their row's three values: line 377 prints 0.895 for "
         "(0.936 + 0.929 + 0.828) / 3 = 0.898, line 385 prints 0.714 for (0.828 + 0.853 + 0.491) / 3 = 0.724; "
         "kept as printed"),
        "line 360 lists the annotations as ribs (肋骨), lungs and heart; the table's columns are lung, heart, clavicle",
    ],
    # The chromosome study (configs/noisy/) keeps the rows and reports the Dice of the chromosome classes
    # (α, β, overlap and their mean) in place of lung, heart and clavicle.
    "study_columns": ("chromosome_alpha", "chromosome_beta", "overlap", "mean"),
}


def _ctv(table: str, method: str, family: str, dice, **extra) -> dict[str, Any]:
    """A CTV-thesis row: the Dice ratio (a fraction in the thesis) as percent, like our columns."""
    return _row("ctv_thesis", table, method, family, dice=None if dice is None else round(100.0 * dice, 4), **extra)


def _table_3_1_rows() -> list[dict[str, Any]]:
    rows = []
    for r in THESIS_TABLE_3_1["rows"]:
        noise = "clean labels" if not r["fraction"] else f"{int(100 * r['fraction'])} %, {r['n_range'][0]}-{r['n_range'][1]} px"
        rows.append(_ctv("3.1", f"{r['method']} ({noise})", "unet_noisy_labels", r["values"]["mean"],
                         note="Dice of lung, heart, clavicle on JSRT: " + ", ".join(
                             f"{k} {v}" for k, v in r["values"].items() if k != "mean")))
    return rows


PAPER_ROWS: tuple[dict[str, Any], ...] = (
    # ---------------- RSE-UNet Table 3: pooling layers (IoU, IoU1, IoU2, Acc, Time ms)
    _rse("3", "RSE-UNet(3L)", "rse_unet", 97.92, 98.11, 97.75, 98.85, 3.6, variant="3L"),
    _rse("3", "RSE-UNet(4L)", "rse_unet", 98.58, 98.79, 99.04, 99.41, 4.1, variant="4L"),
    _rse("3", "RSE-UNet(5L)", "rse_unet", 98.43, 98.29, 98.43, 99.09, 4.5, variant="5L"),
    # ---------------- RSE-UNet Table 4: comparison (IoU, IoU1, IoU2, Acc)
    _rse("4", "U-Net [13]", "unet", 95.52, 96.01, 96.23, 98.10),
    _rse("4", "sim-UNet [14]", "sim_unet", 94.70, 88.20, 94.40, 99.22, note=_HU_NOTE),
    _rse("4", "Saleh et al. [15]", "saleh_unet", 95.12, 95.37, 95.69, 99.68, note="U-Net with TTA (Saleh et al. 2019)"),
    _rse("4", "DeepLabv3+ [11]", "deeplabv3plus", 92.48, 93.09, 94.11, 97.05),
    _rse("4", "SegNet [10]", "segnet", 91.04, 91.78, 92.08, 97.81),
    _rse("4", "CE-Net [12]", "cenet", 92.35, 95.04, 95.51, 98.01),
    _rse("4", "RSE-UNet", "rse_unet", 98.58, 98.79, 99.04, 99.41),
    # ---------------- RSE-UNet Table 5: ablation (ResSE, MDPAC, ResPath)
    _rse("5", "ResSE only", "rse_unet_ablation", 96.88, 96.94, 97.03, 98.80, variant="RSE+ MDPAC- ResPath-"),
    _rse("5", "MDPAC only", "rse_unet_ablation", 95.92, 96.11, 95.98, 98.77, variant="RSE- MDPAC+ ResPath-"),
    _rse("5", "ResPath only", "rse_unet_ablation", 95.60, 96.02, 96.35, 98.60, variant="RSE- MDPAC- ResPath+"),
    _rse("5", "ResSE + MDPAC", "rse_unet_ablation", 97.25, 97.36, 97.41, 98.98, variant="RSE+ MDPAC+ ResPath-"),
    _rse("5", "MDPAC + ResPath", "rse_unet_ablation", 96.85, 97.12, 96.99, 98.50, variant="RSE- MDPAC+ ResPath+"),
    _rse("5", "ResSE + ResPath", "rse_unet_ablation", 97.01, 97.23, 97.09, 98.71, variant="RSE+ MDPAC- ResPath+"),
    _rse(
        "5", "ResSE + MDPAC + ResPath", "rse_unet_ablation", 98.58, 97.99, 98.24, 99.41,
        variant="RSE+ MDPAC+ ResPath+",
        note="full model; IoU1/IoU2 differ from Table 4 (98.79/99.04) as printed",
    ),
    # ---------------- ARMS Net Table 3: pooling layers (IoU, Chrom α IoU, Chrom β IoU, Accuracy, Time ms)
    _arms("3", "UNet (AAR) 3L", "arms_net_ablation", 99.12, 99.59, 99.79, 99.9923, 3.9, variant="3L"),
    _arms("3", "UNet (AAR) 4L", "arms_net_ablation", 99.22, 99.70, 99.85, 99.9943, 4.6, variant="4L"),
    _arms("3", "UNet (AAR) 5L", "arms_net_ablation", 98.60, 99.64, 99.82, 99.9932, 4.8, variant="5L"),
    # ---------------- ARMS Net Table 4: UNet(AAR) 4L, batch size and loss (mean (var) of overlap IoU)
    _arms("4", "BCE_bs8", "arms_net_ablation", 98.37, None, None, None, variant="BCE_bs8",
          note="overlap IoU = mean of the test set (98.37, var 0.41); training set 99.43 (var 0.25)"),
    _arms("4", "BCE_bs16", "arms_net_ablation", 98.98, None, None, None, variant="BCE_bs16",
          note="overlap IoU = mean of the test set (98.98, var 0.39); training set 99.48 (var 0.28)"),
    _arms("4", "BCE_bs32", "arms_net_ablation", 99.09, None, None, None, variant="BCE_bs32",
          note="overlap IoU = mean of the test set (99.09, var 0.29); training set 99.63 (var 0.18)"),
    _arms("4", "BCE_bs64", "arms_net_ablation", 99.01, None, None, None, variant="BCE_bs64",
          note="overlap IoU = mean of the test set (99.01, var 0.31); training set 99.56 (var 0.21)"),
    _arms("4", "wBCE (1.1)_bs32", "arms_net_ablation", 99.15, None, None, None, variant="wBCE (1.1)_bs32",
          note="overlap IoU = mean of the test set (99.15, var 0.39); training set 99.53 (var 0.25)"),
    _arms("4", "wBCE (1.2)_bs32", "arms_net_ablation", 99.12, None, None, None, variant="wBCE (1.2)_bs32",
          note="overlap IoU = mean of the test set (99.12, var 0.38); training set 99.57 (var 0.23)"),
    _arms("4", "wBCE (1.3)_bs32", "arms_net_ablation", 99.1, None, None, None, variant="wBCE (1.3)_bs32",
          note="overlap IoU = mean of the test set (99.1, var 0.32); training set 99.57 (var 0.26)"),
    _arms("4", "wBCE (1.4)_bs32", "arms_net_ablation", 99.02, None, None, None, variant="wBCE (1.4)_bs32",
          note="overlap IoU = mean of the test set (99.02, var 0.31); training set 99.52 (var 0.24)"),
    _arms("4", "wBCE (1.5)_bs32", "arms_net_ablation", 99.04, None, None, None, variant="wBCE (1.5)_bs32",
          note="overlap IoU = mean of the test set (99.04, var 0.5); training set 99.45 (var 0.25)"),
    _arms("4", "wBCE (2.0)_bs32", "arms_net_ablation", 99.01, None, None, None, variant="wBCE (2.0)_bs32",
          note="overlap IoU = mean of the test set (99.01, var 0.44); training set 99.55 (var 0.18)"),
    _arms("4", "wBCE (3.0)_bs32", "arms_net_ablation", 98.73, None, None, None, variant="wBCE (3.0)_bs32",
          note="overlap IoU = mean of the test set (98.73, var 0.55); training set 99.44 (var 0.23)"),
    _arms("4", "AS_wBCE_bs32", "arms_net_ablation", 99.29, None, None, None, variant="AS_wBCE_bs32",
          note="overlap IoU = mean of the test set (99.29, var 0.27); training set 99.33 (var 0.24)"),
    # ---------------- ARMS Net Table 5: nine networks (input size, IoU, α, β, Accuracy, Time ms)
    _arms("5", "UNet", "unet", 96.38, 98.38, 99.16, 99.9690, 3.8, note="4 pooling layers, BCE loss"),
    _arms("5", "UNet (R)", "arms_net_ablation", 96.77, 98.85, 99.41, 99.9780, 4.0, variant="Res Path"),
    _arms("5", "UNet (PR)", "arms_net_ablation", 96.73, 98.84, 99.40, 99.9778, 4.4, variant="PPM + Res Path"),
    _arms("5", "UNet (AR)", "arms_net_ablation", 98.29, 99.12, 99.55, 99.9832, 4.4, variant="ASSP + Res Path"),
    _arms("5", "UNet (DAR)", "arms_net_ablation", 98.36, 99.27, 99.62, 99.9860, 4.7, variant="DAC + ASSP + Res Path"),
    _arms("5", "UNet (AAR)", "arms_net_ablation", 99.22, 99.70, 99.85, 99.9943, 4.6, variant="AMAC + ASSP + Res Path"),
    _arms(
        "5", "UNet (AAR)", "arms_net_ablation", 97.26, 99.03, 99.51, 99.9817, 4.7,
        variant="AMAC + ASSP + Res Path, 256 input", input_size=256,
    ),
    _arms(
        "5", "UNet (AAR)128", "arms_net_ablation", 98.00, 99.30, 99.65, 99.9869, 4.7,
        variant="256 input, modules designed for 128", input_size=256,
    ),
    _arms("5", "ARMS Net", "arms_net", 99.45, 99.77, 99.88, 99.9955, 4.5),
    # ---------------- ARMS Net Table 6: published results (IoU, α, β, Accuracy)
    _arms("6", "Hu et al. [24]", "sim_unet", 94.70, 88.20, 94.40, 99.22, note=_HU_NOTE),
    _arms("6", "Hu et al. + TTA", "sim_unet", None, None, None, 99.27, variant="TTA", note=_HU_NOTE),
    _arms("6", "Saleh et al. [25]", "saleh_unet", None, None, None, 99.68),
    _arms("6", "Sun et al. [48]", "sun_unet", 96.32, None, None, 99.86, note="U-Net, improved dilated convolutions"),
    _arms("6", "CE-Net [26]", "cenet", 90.35, 96.04, 97.76, 99.92),
    _arms("6", "ARMS Net", "arms_net", 99.45, 99.77, 99.88, 99.99, note="accuracy rounded; Table 5 gives 99.9955"),
    # ---------------- AMFL Table II: average scores (Acc, Dice, IoU, Recall, Precision, FNR, FPR, Hausdorff)
    _amfl2("ENet", "enet", 99.8707, 94.5821, 90.7770, 94.5365, 95.0898, 5.4635, 0.3791, 1.5861),
    _amfl2("BiSeNetV1", "bisenet_v1", 99.7361, 90.9037, 85.1075, 89.3718, 93.2404, 10.6282, 1.4966, 1.9584),
    _amfl2("BiSeNetV2", "bisenet_v2", 99.8055, 93.2973, 88.8068, 93.1980, 93.8226, 6.8020, 0.6947, 1.8145),
    _amfl2("DeepLabV3+", "deeplabv3plus", 99.9048, 95.8592, 92.8454, 96.0429, 96.0126, 3.9571, 0.2623, 1.4886),
    _amfl2("FastFCN", "fastfcn", 99.9170, 96.4061, 93.6931, 96.6915, 96.3868, 3.3085, 0.2017, 1.4452),
    _amfl2("UNet", "unet", 99.9684, 97.8970, 96.3765, 97.9654, 98.0156, 2.0346, 0.0331, 1.0230),
    _amfl2("R2UNet", "r2unet", 99.8659, 95.1638, 92.7348, 96.0719, 95.1458, 3.9281, 0.1046, 1.2535),
    _amfl2("AttUNet", "attunet", 99.9625, 97.678, 96.0418, 97.7765, 97.8637, 2.2235, 0.0395, 1.0528),
    _amfl2("R2AttUNet", "r2attunet", 99.9122, 95.7752, 93.6760, 96.6767, 95.6791, 3.3233, 0.0792, 1.1688),
    _amfl2("NestedUNet", "nested_unet", 99.9625, 97.967, 96.6473, 98.0266, 98.0809, 1.9734, 0.0341, 0.9518),
    _amfl2(
        "AMFL (Lovász-Softmax)", "amfl", 99.9776, 98.6048, 97.5974, 98.655, 98.7267, 1.345, 0.0227, 0.8252
    ),
    # ---------------- AMFL Table V: with and without the GAN, five objectives
    _amfl2("NestedUNet with Dice", "nested_unet", 99.9457, 97.3146, 95.596, 97.4631, 97.3846, 2.5369, 0.0701, 1.1617, table="V", variant="NestedUNet with Dice"),
    _amfl2("NestedUNet with Weight-Dice", "nested_unet", 99.9434, 97.1637, 95.2851, 97.3318, 97.3021, 2.6682, 0.0929, 1.2242, table="V", variant="NestedUNet with Weight-Dice"),
    _amfl2("NestedUNet with CE", "nested_unet", 99.9625, 97.967, 96.6473, 98.0266, 98.0809, 1.9734, 0.0341, 0.9518, table="V", variant="NestedUNet with CE"),
    _amfl2("NestedUNet Weight-CE", "nested_unet", 99.9529, 97.7494, 96.063, 98.4318, 97.303, 1.5682, 0.0256, 1.2219, table="V", variant="NestedUNet Weight-CE"),
    _amfl2("NestedUNet with Lovász -Softmax", "nested_unet", 99.9714, 98.2898, 97.1699, 98.3459, 98.3993, 1.6541, 0.0326, 0.9036, table="V", variant="NestedUNet with Lovász -Softmax"),
    _amfl2("AMFL with Dice", "amfl", 99.967, 98.2422, 97.0882, 98.228, 98.4479, 1.772, 0.0335, 0.9166, table="V", variant="AMFL with Dice"),
    _amfl2("AMFL with Weight-Dice", "amfl", 99.9699, 98.3117, 97.1692, 98.3524, 98.4454, 1.6476, 0.0381, 0.9366, table="V", variant="AMFL with Weight-Dice"),
    _amfl2("AMFL with CE", "amfl", 99.9735, 98.4012, 97.3453, 98.3788, 98.6395, 1.6212, 0.0266, 0.8388, table="V", variant="AMFL with CE"),
    _amfl2("AMFL with Weight-CE", "amfl", 99.9699, 98.4557, 97.3259, 98.7066, 98.3769, 1.2934, 0.0175, 0.9988, table="V", variant="AMFL with Weight-CE"),
    _amfl2("AMFL with Lovász -Softmax", "amfl", 99.9776, 98.6048, 97.5974, 98.655, 98.7267, 1.345, 0.0227, 0.8252, table="V", variant="AMFL with Lovász -Softmax"),
    # ---------------- AMFL Table III: per-class average IoU (class 1, 2, 3) and accuracy
    _row(
        "amfl", "III", "Hu et al. [20] [21]", "sim_unet",
        alpha_iou=88.2, beta_iou=94.4, overlap_iou=94.7, accuracy=92.22,
        alpha_beta_definition=NON_OVERLAP, accuracy_definition="pixel_accuracy",
        note=_HU_NOTE + "; accuracy printed as 92.22 here, 99.22 in RSE Table 4 and ARMS Table 6",
    ),
    _row(
        "amfl", "III", "Saleh et al. [21]", "saleh_unet", accuracy=99.68, accuracy_definition="pixel_accuracy",
    ),
    _row(
        "amfl", "III", "AFML (Ours)", "amfl",
        alpha_iou=97.09, beta_iou=98.93, overlap_iou=94.37, accuracy=99.98,
        alpha_beta_definition=NON_OVERLAP, accuracy_definition="pixel_accuracy", input_size=128,
        note="classes 1, 2 = non-overlap regions, class 3 = overlap; accuracy definition not restated (Eq. 8 assumed)",
    ),
    # ---------------- AMFL Table IV: params, GPU ms, CPU ms
    _amfl4("ENet", "enet", 0.35, 63, 38),
    _amfl4("BiSeNet V1", "bisenet_v1", 12.43, 19, 43),
    _amfl4("BiSeNet V2", "bisenet_v2", 2.85, 34, 34),
    _amfl4("DeepLab V3+", "deeplabv3plus", 59.46, 72, 190),
    _amfl4("FastFCN", "fastfcn", 104.3, 78, 380),
    _amfl4("UNet", "unet", 34.53, 19, 274),
    _amfl4("R2UNet", "r2unet", 39.09, 61, 715),
    _amfl4("AttUNet", "attunet", 34.88, 27, 285),
    _amfl4("R2AttUNet", "r2attunet", 39.44, 71, 734),
    _amfl4("NestedUNet", "nested_unet", 36.63, 27, 568),
    _amfl4("AMFL (Ours)", "amfl", 36.63, 27, 568),
    # ---------------- CTV thesis Table 2.1 (line 279-286): Dice ratio, mean of 3 folds
    _ctv("2.1", "UNet", "ctv_unet3d", 0.747),
    _ctv("2.1", "UNet + residual", "ctv_unet3d", 0.753),
    _ctv("2.1", "UNet + residual + SE", "ctv_unet3d", 0.755),
    _ctv("2.1", "UNet + residual + SE + recurrent loss", "ctv_unet3d", 0.757),
    _ctv("2.1", "UNet + residual + SE + recurrent loss + Dice loss", "ctv_unet3d", 0.763),
    # ---------------- CTV thesis Table 3.1 (line 364-389): mean Dice of the three structures
    *_table_3_1_rows(),
)

_ALIASES = {
    "unetplusplus": "nested_unet",
    "unetpp": "nested_unet",
    "attentionunet": "attunet",
    "attunet": "attunet",
    "r2attentionunet": "r2attunet",
    "afml": "amfl",
    "hu": "sim_unet",
    "huetal": "sim_unet",
    "simunet": "sim_unet",
    "saleh": "saleh_unet",
    "saleh_unet_tta": "saleh_unet",
    "deeplabv3": "deeplabv3plus",
    "deeplab": "deeplabv3plus",
    "ce_net": "cenet",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "plusplus").replace("+", "plus"))


def families() -> list[str]:
    """The model families that have reference rows."""
    return sorted({r["model_family"] for r in PAPER_ROWS})


def reference_rows(model_family: str, *, include_variants: bool = False) -> list[dict[str, Any]]:
    """Copies of the published rows for ``model_family`` (e.g. ``"unet"``, ``"nested_unet"``, ``"arms_net"``).

    Names are matched loosely (``"UNet++"``, ``"NestedUNet"`` and ``"nested_unet"`` are the same family).
    Rows describing a variant of a model (pooling depth, input size, TTA) are left out unless
    ``include_variants``.
    """
    known = {_norm(f): f for f in families()}
    known.update({_norm(a): f for a, f in _ALIASES.items()})
    key = _norm(model_family)
    if key not in known:
        raise ValueError(f"no reference rows for model family {model_family!r}; known: {', '.join(families())}")
    fam = known[key]
    return [
        copy.deepcopy(r)
        for r in PAPER_ROWS
        if r["model_family"] == fam and (include_variants or r["variant"] is None)
    ]


def rows_from(paper: str, table: str | None = None) -> list[dict[str, Any]]:
    """Copies of the rows of one paper (``"rse_unet"``, ``"arms_net"``, ``"amfl"``), optionally one table."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; known: {', '.join(PAPERS)}")
    return [copy.deepcopy(r) for r in PAPER_ROWS if r["paper"] == paper and (table is None or r["table"] == table)]
