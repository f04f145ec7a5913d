"""What produced a result: code, config, models, data, machine and command line.

Every results file the project writes carries one `provenance` block, built
by `provenance()`:

  {'code': {'package', 'version', 'git_commit', 'git_dirty', 'git_diff_sha256'},
   'config': {'sha256', 'file'}, 'models': {name: {'workdir', 'step'}},
   'dataset': {'tfds_name', 'config', 'version', 'split', 'examples'},
   'machine': {'device', 'device_count', 'processes', 'cpu', 'cpu_cores', 'platform'},
   'versions': {'python', 'jax', 'flax', ..., 'torch', 'dynaphos'},
   'time_utc', 'command'}

Sections without a value are left out (no config, no dataset...); outside a
git checkout (an installed wheel) the code section has the version only.
`write_json` writes a results file and, beside it, the config its hash
names (`<stem>.config.json`). `format_lines` says the block in a few lines
(table footers, the HTML report); `differences` lists where two blocks
differ in data, config or code, one line each.

Nothing heavy is imported: peers' versions come from the installed
packages' metadata (torch is never imported), git runs without taking the
index lock, and JAX is asked for its devices only when already imported.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
from typing import Any, Mapping

from triplet_pose import __version__
from triplet_pose import storage

PACKAGE = "triplet_pose"
KEY = "provenance"
CONFIG_SUFFIX = ".config.json"
# Distributions whose versions a result depends on; peers appear when installed.
_DISTRIBUTIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                  "tensorflow-datasets", ("tensorflow", "tensorflow-cpu"), "torch",
                  "dynaphos")
_SOURCE_DIR = pathlib.Path(__file__).resolve().parent
_GIT_TIMEOUT_S = 10
# Canonical JSON of the configs hashed in this process, by hash, for
# `write_json` to save beside the results that name them.
_CONFIGS: dict[str, str] = {}


def provenance(*, config: Any = None, models: Mapping[str, Any] | None = None,
               dataset: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The provenance block of a result produced now, by this process.

  Args:
    config: what the result was computed from (a ConfigDict, a dataclass, or
      a mapping of them); its hash goes in the block, and `write_json` saves
      it beside the results file.
    models: {name: {'workdir', 'step'}} (or objects with those attributes)
      of every trained model the result used.
    dataset: from `dataset_info`.

  Returns:
    A JSON-able dict (see the module docstring).
  """
  block: dict[str, Any] = {"code": code_state()}
  if config is not None:
    block["config"] = {"sha256": config_hash(config), "file": None}
  if models:
    block["models"] = {name: _model_entry(m) for name, m in models.items()}
  if dataset:
    block["dataset"] = dict(dataset)
  block["machine"] = machine()
  block["versions"] = versions()
  block["time_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H:%M:%SZ")
  # As typed ('python -m launch.demo ...'); sys.argv has the module's path.
  block["command"] = list(getattr(sys, "orig_argv", None) or sys.argv)
  return block


def _model_entry(model: Any) -> dict[str, Any]:
  if isinstance(model, Mapping):
    workdir, step = model.get("workdir"), model.get("step")
  else:
    workdir, step = model.workdir, model.step
  return {"workdir": None if workdir is None else str(pathlib.Path(workdir).absolute()),
          "step": None if step is None else int(step)}


# ----------------------------------------------------------------------------- config


def _jsonable(value: Any) -> Any:
  if hasattr(value, "to_dict"):  # ml_collections ConfigDict / FrozenConfigDict
    return value.to_dict()
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return dataclasses.asdict(value)
  if hasattr(value, "tolist"):  # numpy arrays and scalars
    return value.tolist()
  if isinstance(value, (set, frozenset)):
    return sorted(value)
  return str(value)


def canonical_config(config: Any) -> str:
  """The config as JSON with sorted keys: equal configs give equal text."""
  return json.dumps(config, sort_keys=True, indent=1, default=_jsonable)


def config_hash(config: Any) -> str:
  """SHA-256 of `canonical_config(config)` (hex); remembered for `write_json`."""
  text = canonical_config(config)
  digest = hashlib.sha256(text.encode()).hexdigest()
  _CONFIGS[digest] = text
  return digest


def config_path(results_path: str | pathlib.Path) -> pathlib.Path:
  """Where the config of a results file is saved: metrics.json -> metrics.config.json."""
  results_path = pathlib.Path(results_path)
  return results_path.with_name(results_path.stem + CONFIG_SUFFIX)


def write_json(path: str | pathlib.Path, payload: dict[str, Any], *,
               indent: int = 2) -> pathlib.Path:
  """Writes a results file and the config its provenance block hashes beside it.

  The block's config entry (in `payload` too) gets the side file's name, so
  that what is written next from the same payload (a table) can name it. A
  block whose config was hashed in another process (nothing to save) is
  written as it is.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  config = (payload.get(KEY) or {}).get("config")
  if config and config.get("sha256") in _CONFIGS:
    side = config_path(path)
    storage.write_text(side, _CONFIGS[config["sha256"]] + "\n")
    config["file"] = side.name
  return storage.write_text(path, json.dumps(payload, indent=indent, allow_nan=True,
                                             default=_jsonable))


def read_config(results_path: str | pathlib.Path,
                block: Mapping[str, Any] | None) -> dict[str, Any] | None:
  """The config saved beside a results file (None when absent or unreadable)."""
  name = ((block or {}).get("config") or {}).get("file")
  if not name:
    return None
  try:
    return json.loads((pathlib.Path(results_path).parent / name).read_text())
  except (OSError, ValueError):
    return None


# ----------------------------------------------------------------------------- code


def code_state() -> dict[str, Any]:
  """The package version, and the git commit of its source when it is a checkout.

  `git_dirty`: tracked files differ from the commit (untracked files are
  not counted: a workdir inside the checkout would always count);
  `git_diff_sha256` then tells two dirty trees of one commit apart.
  """
  state: dict[str, Any] = {"package": PACKAGE, "version": package_version()}
  commit = _git("rev-parse", "HEAD")
  # The source must be tracked by that repository: an installed package
  # inside some other checkout (a venv in a repository) is not its code.
  if not commit or not _git("ls-files", "--", "__init__.py"):
    return state
  status = _git("status", "--porcelain", "--untracked-files=no")
  state["git_commit"] = commit
  state["git_dirty"] = bool(status)
  if status:
    diff = _git_bytes("diff", "HEAD")
    state["git_diff_sha256"] = hashlib.sha256(diff or b"").hexdigest()
  return state


def _git_bytes(*args: str) -> bytes | None:
  # GIT_OPTIONAL_LOCKS=0: `git status` must not take the index lock of a
  # checkout that someone may be committing in.
  env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
  try:
    out = subprocess.run(["git", "-C", str(_SOURCE_DIR), *args], capture_output=True,
                         timeout=_GIT_TIMEOUT_S, env=env, check=False)
  except (OSError, subprocess.SubprocessError):  # no git, or it hung
    return None
  return out.stdout if out.returncode == 0 else None


def _git(*args: str) -> str:
  out = _git_bytes(*args)
  return out.decode(errors="replace").strip() if out else ""


def package_version() -> str:
  try:
    return importlib.metadata.version(PACKAGE)
  except importlib.metadata.PackageNotFoundError:  # run from a source tree
    return __version__


@functools.lru_cache(maxsize=None)
def versions() -> dict[str, str]:
  """Versions of Python and of the installed libraries and peers (metadata only)."""
  found = {"python": platform.python_version()}
  for names in _DISTRIBUTIONS:
    for name in (names,) if isinstance(names, str) else names:
      try:
        found[name] = importlib.metadata.version(name)
        break
      except importlib.metadata.PackageNotFoundError:
        continue
  return found


# ----------------------------------------------------------------------------- machine


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
  """The CPU's model name: lscpu's 'Model name', else /proc/cpuinfo's, else platform's."""
  if shutil.which("lscpu"):
    try:
      out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                           check=False, env=dict(os.environ, LC_ALL="C")).stdout
    except (OSError, subprocess.SubprocessError):
      out = ""
    for line in out.splitlines():
      if line.startswith("Model name:"):
        return line.split(":", 1)[1].strip()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
  """Cores this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def device_description() -> str | None:
  """JAX's first device, e.g. 'gpu (NVIDIA H100 80GB HBM3)' or 'cpu (2 cores)';
  None when this process has not imported JAX (no start-up cost for it)."""
  jax = sys.modules.get("jax")
  if jax is None:
    return None
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"cpu ({cpu_cores()} cores)"
  return f"{device.platform} ({device.device_kind})"


def machine() -> dict[str, Any]:
  found: dict[str, Any] = {}
  device = device_description()
  if device is not None:
    jax = sys.modules["jax"]
    found.update(device=device, device_count=jax.device_count(),
                 processes=jax.process_count())
  found.update(cpu=cpu_model(), cpu_cores=cpu_cores(), platform=platform.platform())
  return found


# ----------------------------------------------------------------------------- data


def dataset_info(input_config: Any, split: str, *,
                 examples: int | None = None) -> dict[str, Any]:
  """The dataset entry of a block: TFDS name, config, version, split, examples.

  Args:
    input_config: a `config.input` section (its `name` and `data_dir`).
    split: the split read.
    examples: the examples read, when not the whole split.
  """
  if input_config.name == "fake":
    info = {"tfds_name": "fake", "config": None, "version": None, "split": split,
            "examples": int(input_config.get("fake_num_examples", 0))}
  else:
    # Deferred: the data layer (TFDS, JAX) adds 1.2 s (measured) to every importer of this module.
    from triplet_pose import data  # pylint: disable=g-import-not-at-top
    tfds = data.tfds_source(input_config, split).dataset_info
    info = {"tfds_name": tfds.name, "config": tfds.config_name,
            "version": str(tfds.version), "split": split,
            "examples": int(tfds.splits[split].num_examples)}
  if examples is not None and examples != info["examples"]:
    info["examples_used"] = int(examples)
  return info


# ----------------------------------------------------------------------------- reading


def format_lines(block: Mapping[str, Any] | None) -> list[str]:
  """The block in a few human-readable lines (table footers, the report)."""
  if not block:
    return ["Provenance: not recorded."]
  code = block.get("code", {})
  commit = code.get("git_commit")
  source = (f"git {commit[:12]}{' (uncommitted changes)' if code.get('git_dirty') else ''}"
            if commit else "not a git checkout")
  lines = [f"Code: {code.get('package', PACKAGE)} {code.get('version', '?')}, {source}"]
  if block.get("config"):
    config = block["config"]
    where = f" ({config['file']})" if config.get("file") else ""
    lines.append(f"Config: sha256 {config['sha256'][:16]}{where}")
  for name, model in (block.get("models") or {}).items():
    lines.append(f"Model {name}: {model.get('workdir')}, step {model.get('step')}")
  if block.get("dataset"):
    d = block["dataset"]
    used = f" ({d['examples_used']} used)" if "examples_used" in d else ""
    tag = "/".join(str(v) for v in (d.get("tfds_name"), d.get("config"), d.get("version"))
                   if v) or d.get("source", "?")
    lines.append(f"Data: {tag}, split {d.get('split')}, {d.get('examples')} examples{used}")
  m = block.get("machine", {})
  device = (f"{m['device']} x{m.get('device_count', 1)}, "
            if m.get("device") and not m["device"].startswith("cpu") else "")
  lines.append(f"Machine: {device}CPU {m.get('cpu', '?')} ({m.get('cpu_cores', '?')} cores), "
               f"{m.get('platform', '?')}")
  lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in
                                        (block.get("versions") or {}).items()))
  lines.append(f"Run: {block.get('time_utc', '?')}, "
               f"command: {' '.join(block.get('command') or ['?'])}")
  return lines


def differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, *,
                configs: tuple[Mapping | None, Mapping | None] = (None, None),
                max_config_lines: int = 20) -> list[str]:
  """Where two blocks differ in data, config or code: one line per difference.

  Args:
    a, b: provenance blocks (None: not recorded).
    configs: the configs saved beside each (`read_config`); with both, the
      config lines name the keys that differ, else the hashes.
    max_config_lines: config keys listed before a '... N more' line.
  """
  if not a or not b:
    which = " and ".join(n for n, blk in (("A", a), ("B", b)) if not blk)
    return [f"provenance: not recorded in {which}; data, config and code cannot be compared"]
  def section(what, x, y):
    return [f"{what}: {key} {_show(u)} (A) vs {_show(v)} (B)" for key, u, v in _changed(x, y)]
  lines = section("data", a.get("dataset") or {}, b.get("dataset") or {})
  config_a, config_b = a.get("config") or {}, b.get("config") or {}
  if config_a.get("sha256") != config_b.get("sha256"):
    if configs[0] is not None and configs[1] is not None:
      changed = section("config", _flatten(configs[0]), _flatten(configs[1]))
      lines += changed[:max_config_lines]
      if len(changed) > max_config_lines:
        lines.append(f"config: ... and {len(changed) - max_config_lines} more keys")
    else:
      lines += section("config", {"sha256": config_a.get("sha256")},
                       {"sha256": config_b.get("sha256")})
  lines += section("code", a.get("code") or {}, b.get("code") or {})
  return lines + section("code", a.get("versions") or {}, b.get("versions") or {})


def _changed(a: Mapping[str, Any], b: Mapping[str, Any]):
  for key in list(a) + [k for k in b if k not in a]:
    if a.get(key) != b.get(key):
      yield key, a.get(key), b.get(key)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, Mapping) or not tree:
    return {prefix.rstrip("."): tree}
  flat = {}
  for key, value in tree.items():
    flat.update(_flatten(value, f"{prefix}{key}."))
  return flat


def _show(value: Any) -> str:
  if value is None:
    return "none"
  if isinstance(value, str) and len(value) in (40, 64) and not value.strip("0123456789abcdef"):
    return value[:12 if len(value) == 40 else 16]  # a commit, a hash
  return repr(value)
