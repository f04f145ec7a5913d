"""Procedural synthetic figures as a TFDS dataset (`synthetic_figures`).

The generator is `figures.py`; the builder is `synthetic_figures_dataset_builder.py`
(the TFDS folder layout); `import triplet_pose.data` registers it with
TFDS. This package file imports neither, so that loading the generator
alone stays light (the build's worker processes import only it).
"""
