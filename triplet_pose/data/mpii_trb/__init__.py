"""MPII Human Pose + MPII-TRB contour points as a TFDS dataset (`mpii_trb`).

The builder lives in `mpii_trb_dataset_builder.py` (the TFDS folder layout, so
`tfds build triplet_pose/data/mpii_trb` finds it); the readers of the MPII
and TRB annotation formats are in `annotations.py`. `import
triplet_pose.data` registers the builder with TFDS; this package file stays
empty of imports so that loading the readers alone stays light.
"""
