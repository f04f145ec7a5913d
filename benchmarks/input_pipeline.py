r"""Examples/s of the input side (host pipeline, on-device augmentation) vs the train step.

  python benchmarks/input_pipeline.py                      # synthetic_figures, batch 16
  python benchmarks/input_pipeline.py --train_step_json=/tmp/ts.json   # reuse a train_step run
  python benchmarks/input_pipeline.py --skip_train_step    # input side only
  python benchmarks/input_pipeline.py --skip_train_step --compare_grain   # vs grain

Measured in this process:

* host pipeline: `pipeline.create_tfds_iterator` (random-access reads, JPEG
  decoding in background threads, batching), shuffled and repeating, as the
  training loop consumes it;
* on-device augmentation: `augment.augment_batch` under `jax.jit` on a
  batch of uint8 256x256 images (rotation, scale, translation, flip, colour
  jitter), after compilation.

With --compare_grain, the same records and decoding are also read through
grain (`grain.DataLoader` + `IndexSampler` with `ShardByJaxProcess` over
the TFDS `as_data_source`), with its decoding in the consuming thread
(worker_count=0) and in worker processes; the two pipelines alternate in one
process. It also checks that a grain iterator restored from its saved state
yields the same batches, and whether two processes' shares of a global batch
make up the one-process batch (as the multi-host training loop needs).

The train step of the joint model (thesis configuration, 8 stacks) comes
from `benchmarks/train_step.py`, run in a subprocess (or read from the JSON
it wrote). The input side must be at least 5x faster than the train step it
feeds. Other jobs on the machine disturb timings: compare ratios, and repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common  # first: puts the repository on sys.path

REQUIRED_RATIO = 5.0


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="synthetic_figures", help="input.name")
  p.add_argument("--data_dir", default="", help="tfds data_dir ('' = tfds default)")
  p.add_argument("--manual_dir", default="")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--batches", type=int, default=40, help="timed host batches")
  p.add_argument("--threads", type=int, default=2, help="JPEG decoding threads")
  p.add_argument("--aug_steps", type=int, default=10, help="timed augmentation batches")
  p.add_argument("--train_batch", type=int, default=4, help="train step batch (thesis: 4)")
  p.add_argument("--stacks", type=int, default=8)
  p.add_argument("--train_step_json", default="", help="JSON written by train_step.py --json")
  p.add_argument("--skip_train_step", action="store_true")
  p.add_argument("--compare_grain", action="store_true",
                 help="also time grain's DataLoader on the same data (pip install grain)")
  p.add_argument("--grain_workers", type=int, default=2,
                 help="worker processes of the second grain variant")
  p.add_argument("--rounds", type=int, default=2, help="alternations ours/grain")
  return p.parse_args(argv)


def _input_config(args):
  from triplet_pose import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.input_config()
  config.name, config.data_dir, config.manual_dir = args.dataset, args.data_dir, args.manual_dir
  config.num_threads = args.threads
  return config


def _rate(iterator, args) -> float:
  """Examples/s of `iterator` over args.batches batches, after 3 warm-up batches."""
  for _ in range(3):  # start the threads or workers, warm the file cache
    next(iterator)
  start = time.perf_counter()
  for _ in range(args.batches):
    next(iterator)
  return args.batches * args.batch / (time.perf_counter() - start)


def host_pipeline_rate(args) -> float:
  from triplet_pose.data import pipeline  # pylint: disable=g-import-not-at-top
  iterator = pipeline.create_tfds_iterator(_input_config(args), split="train",
                                           batch_size=args.batch, seed=0, shuffle=True,
                                           repeat=True)
  rate = _rate(iterator, args)
  iterator.close()
  return rate


def _grain_loader(args, *, workers: int, shard_index: int = 0, shard_count: int = 1):
  """grain's DataLoader over the same TFDS source, decoding and batch size."""
  import functools  # pylint: disable=g-import-not-at-top
  import grain  # pylint: disable=g-import-not-at-top  (optional: only for this comparison)
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():  # grain reads absl flags; this script uses argparse
    flags.FLAGS.mark_as_parsed()
  from triplet_pose.data import pipeline  # pylint: disable=g-import-not-at-top
  config = _input_config(args)
  source = pipeline.tfds_source(config, "train")
  if shard_count == 1:
    shards = grain.sharding.ShardByJaxProcess(drop_remainder=True)
  else:  # what ShardByJaxProcess gives process `shard_index` of `shard_count`
    shards = grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True)
  decode = functools.partial(pipeline.decode_record, image_size=config.image_size)

  class Decode(grain.transforms.Map):
    def map(self, element):
      return decode(element)

  return grain.DataLoader(
      data_source=source,
      sampler=grain.samplers.IndexSampler(len(source), shard_options=shards, shuffle=True,
                                          num_epochs=None, seed=0),
      operations=[Decode(), grain.transforms.Batch(args.batch, drop_remainder=True)],
      worker_count=workers,
      read_options=grain.ReadOptions(num_threads=args.threads, prefetch_buffer_size=2 * args.batch))


def _same_batches(a, b) -> bool:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for x, y in zip(a, b) for k in x)


def grain_comparison(args) -> None:
  """Prints examples/s of ours and grain's (alternating), and grain's semantics."""
  rates = {"ours": [], "grain, decode in the loop thread": [],
           f"grain, {args.grain_workers} worker processes": []}
  for _ in range(args.rounds):
    rates["ours"].append(host_pipeline_rate(args))
    rates["grain, decode in the loop thread"].append(_rate(iter(_grain_loader(args, workers=0)),
                                                           args))
    iterator = iter(_grain_loader(args, workers=args.grain_workers))
    rates[f"grain, {args.grain_workers} worker processes"].append(_rate(iterator, args))
    del iterator  # stops the workers
  ours = statistics.median(rates["ours"])
  for name, values in rates.items():
    print(f"  {name:36s} {statistics.median(values):8.1f} examples/s "
          f"({statistics.median(values) / ours:.2f}x ours; runs: "
          + ", ".join(f"{v:.1f}" for v in values) + ")", flush=True)
  # Resume: a fresh iterator set to a saved state yields the same batches.
  iterator = iter(_grain_loader(args, workers=0))
  for _ in range(5):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(3)]
  resumed = iter(_grain_loader(args, workers=0))
  resumed.set_state(state)
  print(f"  grain resumes at the saved position: {_same_batches(expected, [next(resumed) for _ in range(3)])}"
        f" (state: {len(state)} bytes)")
  # Two processes' first batches vs one process's first two batches.
  one = iter(_grain_loader(args, workers=0))
  single = {n for _ in range(2) for n in next(one)["image_name"].tolist()}
  shares = {n for i in range(2) for n in next(iter(_grain_loader(
      args, workers=0, shard_index=i, shard_count=2)))["image_name"].tolist()}
  print(f"  grain, 2 processes: union of their first batches == one process's first 2 batches: "
        f"{single == shares} ({len(single & shares)} of {len(single)} examples in common)")


def augmentation_rate(args) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from triplet_pose import config as config_lib  # pylint: disable=g-import-not-at-top
  from triplet_pose.data import augment  # pylint: disable=g-import-not-at-top
  config = config_lib.augment_config()
  config.enabled = True
  rng = np.random.default_rng(0)
  b = args.batch
  batch = dict(
      image=jnp.asarray(rng.integers(0, 256, (b, 256, 256, 3)), jnp.uint8),
      joints=jnp.asarray(rng.uniform(0, 255, (b, 16, 2)), jnp.float32),
      joints_visible=jnp.ones((b, 16), jnp.float32),
      contour=jnp.asarray(rng.uniform(0, 255, (b, 26, 2)), jnp.float32),
      contour_visible=jnp.ones((b, 26), jnp.float32),
      head_size=jnp.full((b,), 30.0), crop_to_original=jnp.tile(jnp.eye(2, 3)[None], (b, 1, 1)))
  step = jax.jit(lambda x, k: augment.augment_batch(x, k, config))
  keys = iter(jax.random.split(jax.random.key(0), args.aug_steps + 1))
  times = common.call_times(lambda: jax.block_until_ready(step(batch, next(keys))),
                            args.aug_steps)
  return b / statistics.median(times)


def train_step_rate(args) -> tuple[float, str]:
  """Images/s of the joint model's train step, from benchmarks/train_step.py."""
  path = args.train_step_json
  if not path:
    script = os.path.join(common.REPO, "benchmarks", "train_step.py")
    if not os.path.exists(script):
      raise FileNotFoundError(f"{script} not found: pass --train_step_json or --skip_train_step")
    path = os.path.join(tempfile.mkdtemp(), "train_step.json")
    cmd = [sys.executable, script, "--frameworks=jax", f"--batches={args.train_batch}",
           f"--stacks={args.stacks}", "--steps=2", "--warmup=1", f"--json={path}"]
    print("running: " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  with open(path) as f:
    data = json.load(f)
  rates = {}
  for key, runs in data["results"].items():
    if key.startswith("jax_b"):
      batch = int(key[len("jax_b"):])
      rates[batch] = batch / statistics.median(statistics.median(r["step_s"]) for r in runs)
  batch = args.train_batch if args.train_batch in rates else max(rates)
  stacks = data["args"].get("stacks")
  return rates[batch], f"{stacks} stack(s), batch {batch}, {data.get('cpu', '?')}"


def main(argv=None) -> None:
  args = _parse(argv)
  print(f"machine: {common.describe_machine()}")
  host = host_pipeline_rate(args)
  print(f"host pipeline ({args.dataset}, batch {args.batch}, {args.threads} decode threads): "
        f"{host:8.1f} examples/s", flush=True)
  if args.compare_grain:
    grain_comparison(args)
  aug = augmentation_rate(args)
  print(f"on-device augmentation (jit, batch {args.batch}, 256x256):            "
        f"{aug:8.1f} examples/s", flush=True)
  if args.skip_train_step:
    return
  train, what = train_step_rate(args)
  print(f"train step, joint model ({what}):  {train:8.3f} images/s")
  # Augmentation runs inside the train step, the host pipeline beside it.
  ratios = {"host pipeline": host / train, "augmentation": aug / train}
  for name, ratio in ratios.items():
    print(f"  {name} / train step = {ratio:8.1f}x")
  worst = min(ratios.values())
  verdict = "OK" if worst >= REQUIRED_RATIO else "TOO SLOW"
  print(f"input side is {worst:.1f}x the train step (required >= {REQUIRED_RATIO:.0f}x): {verdict}")


if __name__ == "__main__":
  main()
