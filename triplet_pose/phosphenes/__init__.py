"""Phosphene simulation: dynaphos' biologically grounded model, in JAX.

    from triplet_pose import phosphenes
    params = phosphenes.load_params("params.yaml")   # or a dict
    sim = phosphenes.Simulator.create(params, x_deg, y_deg)
    state = sim.init_state(batch_shape=())
    state, image = sim.step(state, amplitude)
    images = sim.run(amplitudes)                     # (T, *batch, N) -> (T, *batch, H, W)
    mask = phosphenes.render_pose({"joints": joints}, image_size=(256, 256),
                                  output_size=sim.resolution,
                                  style=phosphenes.DrawStyle(line_width=4.0))
    amplitude = sim.sample_stimulus(mask, rescale=True)

See docs/phosphenes.md.
"""

from triplet_pose.phosphenes.layout import cartesian_to_polar
from triplet_pose.phosphenes.layout import cortex_grid
from triplet_pose.phosphenes.layout import cortex_to_visual_field
from triplet_pose.phosphenes.layout import cortical_magnification
from triplet_pose.phosphenes.layout import in_view
from triplet_pose.phosphenes.layout import Layout
from triplet_pose.phosphenes.layout import load_coordinates
from triplet_pose.phosphenes.layout import phosphenes_by_magnification
from triplet_pose.phosphenes.layout import phosphenes_from_cortex
from triplet_pose.phosphenes.layout import polar_to_cartesian
from triplet_pose.phosphenes.layout import remove_out_of_view
from triplet_pose.phosphenes.layout import visual_field_grid
from triplet_pose.phosphenes.layout import visual_field_to_cortex
from triplet_pose.phosphenes.params import DEFAULT_PARAMS
from triplet_pose.phosphenes.params import default_params
from triplet_pose.phosphenes.params import load_params
from triplet_pose.phosphenes.pose import DrawStyle
from triplet_pose.phosphenes.pose import image_to_simulator_coordinates
from triplet_pose.phosphenes.pose import pose_stimulus
from triplet_pose.phosphenes.pose import pose_to_phosphenes
from triplet_pose.phosphenes.pose import render_pose
from triplet_pose.phosphenes.pose import render_pose_at
from triplet_pose.phosphenes.simulator import Options
from triplet_pose.phosphenes.simulator import PhospheneFrame
from triplet_pose.phosphenes.simulator import Simulator
from triplet_pose.phosphenes.simulator import SimulatorState
