"""`medseg plan`: configure training from the data itself, as nnU-Net does.

:func:`fingerprint` describes a data set (sizes, spacings, intensities, classes, modality), :func:`plan`
turns that into a complete config with a reason for every choice, :func:`write_plan` writes it as a
commented YAML (plus the fingerprint as JSON). Layer: beside :mod:`medseg.artifact` — it reads data and
sizes networks (``data``, ``models``, ``config``), and nothing it imports trains or predicts.
"""

from medseg.planning.fingerprint import fingerprint
from medseg.planning.network_plan import estimate_memory
from medseg.planning.planner import (
    Decision,
    apply_sets,
    plan,
    plan_yaml,
    write_plan,
)

__all__ = ["Decision", "apply_sets", "estimate_memory", "fingerprint", "plan", "plan_yaml", "write_plan"]
