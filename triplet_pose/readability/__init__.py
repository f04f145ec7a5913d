"""Which pose representation can a prosthesis user read? A computational observer.

* `representations`: the registry of what is drawn for the implant (image
  edges, joints, triplet, both, silhouette, overlap variants) as activation
  masks, the simulator of each phosphene count, the phosphene images, and
  the implant budget (active electrodes, charge per frame).
* `observer`: a small hourglass trained on phosphene images alone to find
  the 16 joints.
* `learned`: an encoder of the pose into electrode amplitudes, trained
  against the frozen common reader within the drawn representations'
  median budget.
* `cells`: the images of a condition (uint8, cached) and a reader's scores.
* `protocols`: the ideal (a reader per cell) and common (one frozen reader)
  protocols, and the readers and encoders a run keeps.
* `stats`, `pictoriality`: bootstrap CIs and paired tests; overlap of
  phosphene images with the silhouette.
* `benchmark`: the grid's config, run and resume; `assemble`: results.json's
  cells and comparisons; `tables`, `outputs`, `figures`: what is written.
* `choice`: the 4-alternative choice rule shared with the human experiment;
  `trials`: the observers answering the experiment's trials.
* `scenes`: scenes of several people (`scenes_data`, `scenes_images`), an
  associative-embedding reader per cell (`scenes_reader`), the multi-person
  AP, person count and occlusion bins (`scenes_assemble`, `scenes_tables`).

Run it with `python -m launch.readability --workdir=DIR [--quick] [--scenes]`.
"""
