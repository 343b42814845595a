"""Experiments above training and evaluation: ``medseg reproduce`` trains and evaluates every row of a
paper's table (:mod:`medseg.experiments.tables`) and compares the numbers with the published ones."""
