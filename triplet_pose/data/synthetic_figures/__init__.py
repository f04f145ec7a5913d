"""Procedural synthetic figures as a TFDS dataset (`synthetic_figures`).

The generator is `figures.py`; the builder is `synthetic_figures_dataset_builder.py`
(the TFDS folder layout). This package file imports neither, so that
loading the generator never registers the builder twice.
"""
