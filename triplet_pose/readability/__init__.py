"""Which pose representation can a prosthesis user read? A computational observer.

* `representations`: the registry of what is drawn for the implant (image
  edges, joints, triplet, both, silhouette, overlap variants) as activation
  masks, the simulator of each phosphene count, and the phosphene images.
* `observer`: a small hourglass trained on phosphene images alone to find
  the 16 joints (one per representation and phosphene count), and the
  `learned` representation, an encoder trained with it through the
  simulator.
* `cells`: one cell of the grid: the observer of one representation at one
  phosphene count, from ground-truth and predicted poses.
* `benchmark`: the grid of (representation, phosphene count) cells, its
  config, resumable, and the run-to-run spread.
* `outputs`: results.json, the tables and the figure files of a run.
* `figures`: the PCKh-vs-phosphenes plot and the example grid (matplotlib).

Run it with `python -m launch.readability --workdir=DIR [--quick]`.
"""
