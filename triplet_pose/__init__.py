"""triplet_pose: joint and triplet pose estimation and phosphene rendering in JAX."""

__version__ = "0.1.0"
