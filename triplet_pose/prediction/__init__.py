"""Image or video -> pose (joints and triplet contour) -> phosphenes, with files.

One module per job:

* `reading`: images of any mode, video frames, folders, `--box`.
* `predictor`: `crop`, `Predictor` (the jitted, batched joint (+ triplet)
  or combined model with flip test) and `Prediction`.
* `renderer`: `PhospheneRenderer`, pose -> activation mask -> simulated
  phosphenes per keypoint set, with temporal dynamics.
* `writers`: JSON records, matplotlib panels, the fast side-by-side frame,
  MP4 writing.
* `stream`: live video, `PhospheneStream`: frames -> phosphene frames with
  one jitted function per chunk and the simulator state carried over.
* `files`: `predict_paths`, a file, folder or video -> output files.
* `scene_stream`: several people, `ScenePipeline`: a frame -> grouped
  persons -> phosphenes of the scene, the simulator's state carried over.
* `scene_files`: `predict_scene_paths`, the same files for several people.
* `scenes`: evaluation of a multi-person workdir and its scene panels.
"""

from triplet_pose.prediction.files import predict_paths
from triplet_pose.prediction.files import predict_video
from triplet_pose.prediction.predictor import crop
from triplet_pose.prediction.predictor import Prediction
from triplet_pose.prediction.predictor import Predictor
from triplet_pose.prediction.reading import iter_video_frames
from triplet_pose.prediction.reading import list_inputs
from triplet_pose.prediction.reading import load_image
from triplet_pose.prediction.reading import parse_box
from triplet_pose.prediction.reading import UnreadableInputError
from triplet_pose.prediction.reading import VIDEO_SUFFIXES
from triplet_pose.prediction.reading import video_fps
from triplet_pose.prediction.renderer import PhospheneRenderer
from triplet_pose.prediction.scene_files import predict_scene_paths
from triplet_pose.prediction.scene_stream import holds_several_people
from triplet_pose.prediction.scene_stream import SceneFrame
from triplet_pose.prediction.scene_stream import ScenePersons
from triplet_pose.prediction.scene_stream import ScenePipeline
from triplet_pose.prediction.stream import LiveFrame
from triplet_pose.prediction.stream import PhospheneStream
from triplet_pose.prediction.writers import panel
from triplet_pose.prediction.writers import prediction_record
