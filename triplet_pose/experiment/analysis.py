"""Analysis of the experiment (being written)."""

from __future__ import annotations

import numpy as np

CHANCE = 0.25


def psychometric(x, *, threshold, slope, lapse, at=0.625, chance=CHANCE):
  """Accuracy at log10 N = x: chance + (1 - chance - lapse) * logistic(slope (x - m)).

  Parameterised by `threshold`, the x where accuracy is `at`.
  """
  q = (at - chance) / (1 - chance - lapse)
  m = threshold - np.log(q / (1 - q)) / slope
  return chance + (1 - chance - lapse) / (1 + np.exp(-slope * (np.asarray(x) - m)))
