"""Evaluation of generated videos against ground truth: the metrics of MagicAnimate's Table 1.

The numbers follow the DisCo evaluation code that MagicAnimate reported with (see docs/eval.md);
every feature network is built here and loads its released weights from a local file.
"""
