"""Ask people: a web experiment on which phosphene representation humans can read.

* `design`: the config, the manifest, each participant's counterbalanced
  trials (no JAX: the server imports it).
* `stimuli`: the stimulus set from the readability representations and the
  simulator, and the manifest (`launch.experiment build`).
* `observer_answers`: the readability observer answering the same trials.
* `store`: responses in SQLite (WAL) or PostgreSQL through SQLAlchemy; export.
* `server`: the ASGI application (starlette under uvicorn) and its HTTP API.
* `participants`: virtual participants that take the experiment over HTTP.
* `analysis`: accuracy with bootstrap CIs, psychometric thresholds, a mixed
  model, reaction times, exclusions, people beside the observer.
* `web/`: the participant page (jsPsych 8, pinned by npm's lockfile).

See docs/experiment.md.
"""
