"""The data sets medseg reads, one plug-in module each (:mod:`medseg.data.registry`). Importing a module registers
its data sets, so the order of these imports is the order their claims are asked: the first that claims a
config reads it. (No plug-in module imports another — what they share is in :mod:`medseg.data.sets.readers` —
so nothing registers out of this order.)

Why this order: volumes first (``task.spatial_dims: 3`` reads volumes whatever the path); then the sets named by
their ``data.path`` (``synth:*``, ``mfish:*``), which no path-based set must take; then the folders recognised
by their layout (the M-FISH set, a UW-Madison folder: otherwise plain folders); last the generic readers, a
Pommier file for anything that is not a folder and an images/ + masks/ folder for any other folder.
"""

# The order of these imports is the order data sets are asked to claim a path (first claim wins).
# isort: off
from medseg.data.sets import phantom, volumes  # noqa: F401  (register synth:phantom, then any volumes)
from medseg.data.sets import synth, synth_gi, mfish_sets  # noqa: F401  (register synth:*, then mfish:*)
from medseg.data.sets import mfish, uwgi  # noqa: F401  (register the M-FISH and UW-Madison folders)
from medseg.data.sets import pommier, folder  # noqa: F401  (register any other file, then any other folder)
# isort: on
