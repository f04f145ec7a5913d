"""Scenes of several synthetic figures as a TFDS dataset (`synthetic_scenes`).

The generator is `scenes.py` (figures from `synthetic_figures`, depth
order, occluders, exact visibility); the builder is
`synthetic_scenes_dataset_builder.py`; `import triplet_pose.data` registers
it with TFDS. This package file imports neither, so that the build's worker
processes stay light.
"""
