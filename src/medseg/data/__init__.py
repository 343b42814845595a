"""Datasets, readers/writers, splits, transforms and the synthesizer.

Importing the package registers the built-in data sets (:mod:`medseg.data.sets`) with
:mod:`medseg.data.registry`, so every module here finds them registered; the registry itself imports no data
set, since they import the readers that ask it.
"""

from medseg.data import sets  # noqa: F401  (registers the built-in data sets, in their order)
