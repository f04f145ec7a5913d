"""The readability observer answering the experiment's trials (off: steps 0)."""


def add_to_manifest(config, manifest, workdir, *, log=print):
  """Adds the observer's answers to the manifest's items (nothing when off)."""
  del manifest, workdir, log
  if not config.observer.steps:
    return
