"""CT volumes (the CTV thesis' task): the data sets of volumes name it (:attr:`medseg.data.registry.DataSet.task`);
its report is the neutral one, with the thesis' Dice beside ours where its model was trained."""

from __future__ import annotations

from medseg.evaluation.tasks.base import Task


class CTV(Task):
    """What the report says about the synthesized phantom."""

    name = "ctv"

    def synthesized_note(self, cfg, data) -> str:
        return (
            "Synthetic CT-like phantom (medseg.data.phantom): DEMO DATA, not clinical — these numbers show the "
            "pipeline works, not what the model would reach on patients. Volumes are scored on the preprocessed grid."
        )
