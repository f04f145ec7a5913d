"""Pose models."""

from triplet_pose.models.combined import CombinedHourglass
from triplet_pose.models.hourglass import Hourglass, Residual, StackedHourglass

__all__ = ["CombinedHourglass", "Hourglass", "Residual", "StackedHourglass"]
