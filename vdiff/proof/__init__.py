"""Measured results: the proof that each variant learns, and the tables that collate sample.py's jobs.

harness.py   `python -m vdiff.proof`: per variant, train.py -> sample.py -m per eval -> docs
presets.py   configs/proof/<device>/<variant>.yaml, read, checked and scaled to a budget
targets.py   a preset's value paths and the targets checked on them
report.py    <docs>/<device>.md and .json, rebuilt from every variant's run folders
sweep.py     sweep.csv and sweep.md of a `sample.py -m` run (a Hydra callback of sample.yaml)
"""
