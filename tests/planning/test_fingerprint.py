"""`medseg plan` on data it does not plan: a clear pointer instead of a misleading reader error."""

from __future__ import annotations

import pytest


def test_a_uw_madison_folder_is_pointed_to_the_gi_recipe(tmp_path):
    from medseg.data.synth_gi import write_synth_gi
    from medseg.errors import DataValidationError
    from medseg.planning.fingerprint import fingerprint

    write_synth_gi(tmp_path / "uw", n_cases=1, seed=0, slices=4, progress=False)
    with pytest.raises(DataValidationError, match="configs/gi/unet4.yaml"):
        fingerprint(tmp_path / "uw", progress=False)
