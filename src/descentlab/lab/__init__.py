"""The lab: landscapes and races, comparisons on real data, learning-rate search, reports.

Import the pieces from their modules (``descentlab.lab.lr_find``, ``descentlab.lab.compare``, …).
"""
