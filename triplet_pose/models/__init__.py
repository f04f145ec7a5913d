"""Pose models."""

from triplet_pose.models.hourglass import Hourglass, Residual, StackedHourglass

__all__ = ["Hourglass", "Residual", "StackedHourglass"]
