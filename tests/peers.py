"""Importing the optional peers (torch, dynaphos, OpenCV) in tests.

Locally a test module whose peer is missing is skipped, with the reason and
the install command in the skip message (`pytest -rs` prints it). Under CI
(`CI=true`, as `.ci/run` runs), where `pip install -e '.[test,peers]'` has
installed every peer, a missing peer is an install bug: the import FAILS
instead of skipping, so a green CI means the equivalence tests ran.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

INSTALL = "pip install -e '.[test,peers]'"


def in_ci() -> bool:
  """Whether the tests run under CI (`CI` set to a true value)."""
  return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(module: str, *, why: str = "") -> ModuleType:
  """Imports `module`, or skips the calling test module (fails under CI).

  Call at module level (like `pytest.importorskip`) or inside a test.

  Args:
    module: dotted module name, e.g. "dynaphos.simulator".
    why: what needs it, for the message.

  Returns:
    The imported module.

  Raises:
    pytest.fail.Exception: under CI when the import fails.
    pytest.skip.Exception: elsewhere when the import fails.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    reason = (f"cannot import {module} ({type(e).__name__}: {e})"
              f"{'; needed for ' + why if why else ''}; install with {INSTALL}")
    if in_ci():
      pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
