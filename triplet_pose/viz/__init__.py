"""Figures: poses over images, heatmaps, phosphene renderings, training curves.

Everything draws on `matplotlib.figure.Figure` objects with the Agg canvas
(no pyplot, so no global state and no display needed) and returns the figure
or an RGB uint8 array of it (`figure_to_array`) for PNG files, videos and
TensorBoard. Figures live here only: the libraries below (phosphenes,
readability) compute arrays.

* `poses`: skeletons, triplets, heatmap overlays, `pose_panel`,
  `prediction_grid`, `phosphene_picture`, `figure_to_array`, `save_figure`.
* `curves`: `pckh_curve_figure`, `loss_per_stack_figure`.
* `overlap`: `overlap_figure`, `write_readability_figure`.
"""

from triplet_pose.viz.curves import loss_per_stack_figure
from triplet_pose.viz.curves import pckh_curve_figure
from triplet_pose.viz.curves import read_loss_per_stack
from triplet_pose.viz.overlap import overlap_figure
from triplet_pose.viz.overlap import write_readability_figure
from triplet_pose.viz.poses import CENTRE
from triplet_pose.viz.poses import CONTOUR_COLOURS
from triplet_pose.viz.poses import draw_skeleton
from triplet_pose.viz.poses import draw_triplet
from triplet_pose.viz.poses import figure_to_array
from triplet_pose.viz.poses import heatmap_overlay
from triplet_pose.viz.poses import JOINT_COLOURS
from triplet_pose.viz.poses import LEFT
from triplet_pose.viz.poses import PanelInputs
from triplet_pose.viz.poses import phosphene_picture
from triplet_pose.viz.poses import pose_panel
from triplet_pose.viz.poses import prediction_grid
from triplet_pose.viz.poses import RIGHT
from triplet_pose.viz.poses import save_figure
