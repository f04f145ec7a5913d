"""The experiment's analysis: accuracy, thresholds, a mixed model, RTs, the observer.

`analyze(workdir, url, out=...)` reads every stored response
(`store.export_rows`) and writes `out/results.json`, `out/table.txt` and
`out/psychometric.png`:

* exclusions by the rule fixed in the config before the data came in
  (`config.exclusion`: catch-trial accuracy; trials faster than
  `min_rt_ms` are dropped);
* accuracy per representation x N on the main choice trials, with 95%
  bootstrap CIs that resample participants and figures (two-way: a trial
  weighs count(participant) x count(figure) in a resample);
* psychometric curves per representation, accuracy against log10 N with
  chance 0.25 and a lapse rate (`psychometric`), fitted by maximum
  likelihood, and the threshold (N at 62.5% correct) with bootstrap CIs
  from the same resamples;
* a mixed-effects logistic model (statsmodels' BinomialBayesMixedGLM,
  variational Bayes): correct ~ representation x log10 N, with participant
  and figure as random intercepts;
* median reaction times of correct main trials, and click-trial PCKh;
* the computational observer, when the manifest holds its answers: its
  accuracy on the same items with the same choice rule, the agreement of
  the rankings of conditions (Kendall's tau) and the error consistency of
  each participant with it (Cohen's kappa over shared trials, Geirhos et
  al., 2020).
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats

from triplet_pose import storage
from triplet_pose.experiment import design
from triplet_pose.experiment import store as store_lib

CHANCE = 0.25


def psychometric(x, *, threshold, slope, lapse, at=0.625, chance=CHANCE):
  """Accuracy at log10 N = x: chance + (1 - chance - lapse) logistic(slope (x - m)).

  Parameterised by `threshold`, the x at which accuracy is `at`.
  """
  q = (at - chance) / (1 - chance - lapse)
  m = threshold - np.log(q / (1 - q)) / slope
  return chance + (1 - chance - lapse) / (1 + np.exp(-slope * (np.asarray(x) - m)))


def _grid(x, *, at, max_lapse, chance):
  """Parameter grid (threshold, slope, lapse) and its accuracies at x."""
  thresholds = np.arange(x.min() - 2, x.max() + 2 + 1e-9, 0.005)
  slopes = np.geomspace(0.3, 30, 40)
  lapses = np.linspace(0, max_lapse, 7)
  t, b, l = (a.ravel() for a in np.meshgrid(thresholds, slopes, lapses, indexing="ij"))
  p = psychometric(x[None, :], threshold=t[:, None], slope=b[:, None], lapse=l[:, None],
                   at=at, chance=chance)
  return np.stack([t, b, l], 1), np.clip(p, 1e-9, 1 - 1e-9)


def fit_psychometric(x, k, n, *, at: float = 0.625, max_lapse: float = 0.06,
                     chance: float = CHANCE) -> dict[str, Any]:
  """Maximum-likelihood fit of `psychometric` to k correct of n at each x.

  `k` and `n` may carry leading axes (bootstrap resamples): every row is
  fitted at once on a grid (threshold steps of 0.005 decades, 40 slopes, 7
  lapse rates) by one matrix product; a single fit is then refined by
  Nelder-Mead from its grid optimum. The threshold stays within two
  decades of the tested range.

  Returns:
    {'threshold' (log10 N), 'slope', 'lapse'}: floats, or arrays over the
    leading axes of k.
  """
  x = np.asarray(x, np.float64)
  k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
  params, p = _grid(x, at=at, max_lapse=max_lapse, chance=chance)
  loglik = k @ np.log(p).T + (n - k) @ np.log1p(-p).T  # (..., grid)
  best = params[np.argmax(loglik, axis=-1)]
  if k.ndim > 1:
    return {"threshold": best[..., 0], "slope": best[..., 1], "lapse": best[..., 2]}

  def nll(q):
    t, log_b, lapse = q
    if not (x.min() - 2 <= t <= x.max() + 2 and 0 <= lapse <= max_lapse):
      return np.inf
    prob = np.clip(psychometric(x, threshold=t, slope=math.exp(log_b), lapse=lapse, at=at,
                                chance=chance), 1e-9, 1 - 1e-9)
    return -np.sum(k * np.log(prob) + (n - k) * np.log1p(-prob))
  res = optimize.minimize(nll, [best[0], math.log(best[1]), best[2]], method="Nelder-Mead",
                          options={"xatol": 1e-5, "fatol": 1e-7})
  return {"threshold": float(res.x[0]), "slope": float(math.exp(res.x[1])),
          "lapse": float(res.x[2])}


def _bootstrap_weights(p_idx, f_idx, num_p, num_f, *, samples, seed):
  """(samples, trials) weights: count(participant) x count(figure) per resample."""
  rng = np.random.default_rng(seed)
  cp = rng.multinomial(num_p, np.full(num_p, 1 / num_p), size=samples)
  cf = rng.multinomial(num_f, np.full(num_f, 1 / num_f), size=samples)
  return cp[:, p_idx] * cf[:, f_idx]


def _ci(values) -> list[float]:
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def exclusions(rows: list[dict[str, Any]], rule: dict[str, Any]) -> dict[str, str]:
  """Participants the config's rule excludes: {participant_id: reason}."""
  out = {}
  for pid in sorted({r["participant_id"] for r in rows}):
    catch = [bool(r["correct"]) for r in rows if r["participant_id"] == pid
             and r["phase"] == "catch"]
    if not catch:
      out[pid] = "no catch trials answered"
    elif np.mean(catch) < rule["min_catch_accuracy"]:
      out[pid] = f"catch accuracy {np.mean(catch):.2f} < {rule['min_catch_accuracy']}"
  return out


def choice_analysis(trials: list[dict[str, Any]], conditions: list[str], *, config,
                    samples: int, seed: int) -> dict[str, Any]:
  """Accuracy per condition and thresholds per representation, with bootstrap CIs."""
  a = config["analysis"]
  pids = sorted({t["participant_id"] for t in trials})
  figs = sorted({t["figure"] for t in trials})
  p_idx = np.asarray([pids.index(t["participant_id"]) for t in trials])
  f_idx = np.asarray([figs.index(t["figure"]) for t in trials])
  c_idx = np.asarray([conditions.index(t["condition"]) for t in trials])
  correct = np.asarray([float(bool(t["correct"])) for t in trials])
  onehot = np.eye(len(conditions))[c_idx]  # (T, C)
  w = _bootstrap_weights(p_idx, f_idx, len(pids), len(figs), samples=samples, seed=seed)
  k_boot, n_boot = (w * correct) @ onehot, w @ onehot
  k, n = correct @ onehot, onehot.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    acc_boot = k_boot / n_boot
  cells = {}
  for c, cond in enumerate(conditions):
    cells[cond] = {"n": int(n[c]), "accuracy": float(k[c] / n[c]) if n[c] else float("nan"),
                   "ci": _ci(acc_boot[:, c])}
  fits = {}
  for rep in dict.fromkeys(c.split("/")[0] for c in conditions):
    cols = [c for c, cond in enumerate(conditions) if cond.startswith(rep + "/") and n[c]]
    if len(cols) < 2:
      continue
    x = np.log10([int(conditions[c].split("/")[1]) for c in cols])
    fit = fit_psychometric(x, k[cols], n[cols], at=a["threshold_accuracy"],
                           max_lapse=a["max_lapse"])
    boots = fit_psychometric(x, k_boot[:, cols], n_boot[:, cols], at=a["threshold_accuracy"],
                             max_lapse=a["max_lapse"])["threshold"]
    fits[rep] = {**fit, "threshold_n": 10 ** fit["threshold"],
                 "threshold_ci_n": [10 ** v for v in _ci(boots)]}
  return {"cells": cells, "fits": fits, "participants": len(pids), "figures": len(figs)}


def mixed_model(trials: list[dict[str, Any]]) -> dict[str, Any]:
  """correct ~ representation * log10 N + (1 | participant) + (1 | figure), by VB."""
  # Deferred: only `analyze` fits the model; participants imports this module (+0.26 s measured).
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM  # pylint: disable=g-import-not-at-top
  frame = pd.DataFrame({"correct": [float(bool(t["correct"])) for t in trials],
                        "representation": [t["representation"] for t in trials],
                        "log10_n": [math.log10(t["num_phosphenes"]) for t in trials],
                        "participant": [t["participant_id"] for t in trials],
                        "figure": [str(t["figure"]) for t in trials]})
  frame["log10_n"] -= frame["log10_n"].mean()  # the intercept at the mean log N
  model = BinomialBayesMixedGLM.from_formula(
      "correct ~ C(representation) * log10_n", {"participant": "0 + C(participant)",
                                                "figure": "0 + C(figure)"}, frame)
  result = model.fit_vb()
  names = model.exog_names
  fixed = {name: {"mean": float(m), "sd": float(s)}
           for name, m, s in zip(names, result.fe_mean, result.fe_sd)}
  random_sd = {name: float(math.exp(v)) for name, v in zip(model.vcp_names, result.vcp_mean)}
  return {"fixed": fixed, "random_sd": random_sd, "method": "BinomialBayesMixedGLM.fit_vb"}


def error_consistency(human: np.ndarray, machine: np.ndarray) -> float:
  """Cohen's kappa of two observers' correct/wrong over the same trials (Geirhos 2020)."""
  human, machine = np.asarray(human, bool), np.asarray(machine, bool)
  observed = np.mean(human == machine)
  ph, pm = human.mean(), machine.mean()
  expected = ph * pm + (1 - ph) * (1 - pm)
  return float((observed - expected) / (1 - expected)) if expected < 1 else float("nan")


def observer_comparison(trials, manifest, cells: dict[str, Any]) -> dict[str, Any] | None:
  """The observer's accuracy per condition, rank agreement and error consistency."""
  items = manifest["items"]
  answered = [i for i in items.values() if i["task"] == "choice" and "observer" in i
              and i["phase"] == "main"]
  if not answered:
    return None
  per_cond: dict[str, list[bool]] = {}
  for item in answered:
    per_cond.setdefault(item["condition"], []).append(item["observer"]["choice"] == item["answer"])
  accuracy = {c: float(np.mean(v)) for c, v in per_cond.items()}
  shared = [c for c in cells if c in accuracy and cells[c]["n"]]
  tau = stats.kendalltau([cells[c]["accuracy"] for c in shared],
                         [accuracy[c] for c in shared]) if len(shared) > 1 else None
  kappas = []
  for pid in sorted({t["participant_id"] for t in trials}):
    mine = [t for t in trials if t["participant_id"] == pid and "observer" in items[t["item_id"]]]
    if len(mine) > 1:
      obs = [items[t["item_id"]]["observer"]["choice"] == items[t["item_id"]]["answer"]
             for t in mine]
      kappas.append(error_consistency([bool(t["correct"]) for t in mine], obs))
  kappas = [k for k in kappas if math.isfinite(k)]
  return {"accuracy": accuracy,
          "kendall_tau": None if tau is None else float(tau.statistic),
          "kendall_p": None if tau is None else float(tau.pvalue),
          "error_consistency_mean": float(np.mean(kappas)) if kappas else None,
          "error_consistency_sd": float(np.std(kappas)) if kappas else None,
          "observer": manifest.get("observer", {})}


def _summaries(trials, key: str, conditions) -> dict[str, Any]:
  out = {}
  for cond in conditions:
    values = [t[key] for t in trials if t["condition"] == cond and t[key] is not None]
    if values:
      out[cond] = {"n": len(values), "median" if key == "rt_ms" else "mean":
                   float(np.median(values) if key == "rt_ms" else np.mean(values))}
  return out


def format_table(results: dict[str, Any]) -> str:
  lines = [f"{results['participants_included']} participants included, "
           f"{len(results['excluded'])} excluded by the catch-trial rule "
           f"(< {results['exclusion_rule']['min_catch_accuracy']:.0%} correct)", "",
           "Choice accuracy (chance 25%), 95% bootstrap CI over participants and figures",
           f"{'condition':<24}{'n':>6}{'accuracy':>10}{'CI':>18}{'RT ms':>8}"
           f"{'click PCKh':>12}{'observer':>10}"]
  obs = (results.get("observer") or {}).get("accuracy", {})
  for cond, cell in results["choice"]["cells"].items():
    rt = results["rt"].get(cond, {}).get("median", float("nan"))
    pckh = results["click"].get(cond, {}).get("mean", float("nan"))
    ci = f"[{cell['ci'][0]:.2f}, {cell['ci'][1]:.2f}]"
    lines.append(f"{cond:<24}{cell['n']:>6}{cell['accuracy']:>10.3f}{ci:>18}{rt:>8.0f}"
                 f"{pckh:>12.3f}{obs.get(cond, float('nan')):>10.3f}")
  lines += ["", f"Thresholds: N at {results['threshold_accuracy']:.1%} correct (psychometric "
            "fit: chance 0.25, lapse), 95% bootstrap CI"]
  for rep, fit in results["choice"]["fits"].items():
    lo, hi = fit["threshold_ci_n"]
    lines.append(f"{rep:<24}N = {fit['threshold_n']:8.0f}  [{lo:8.0f}, {hi:8.0f}]  "
                 f"slope {fit['slope']:.2f}  lapse {fit['lapse']:.3f}")
  lines += ["", "Mixed-effects logistic model (participant and figure random intercepts)"]
  for name, v in results["mixed_model"]["fixed"].items():
    lines.append(f"{name:<44}{v['mean']:>8.3f} +- {v['sd']:.3f}")
  o = results.get("observer")
  if o:
    lines += ["", f"Observer vs people: Kendall tau of condition ranks {o['kendall_tau']:.2f}; "
              f"error consistency kappa {o['error_consistency_mean']:.2f} "
              f"(sd {o['error_consistency_sd']:.2f} over participants)"]
  return "\n".join(lines)


def write_figure(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
  """Accuracy against N per representation, with CIs and the fitted curves."""
  # Deferred: only `analyze` draws; participants imports this module (+0.28 s measured).
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
  cells, fits = results["choice"]["cells"], results["choice"]["fits"]
  for k, rep in enumerate(dict.fromkeys(c.split("/")[0] for c in cells)):
    colour = f"C{k}"
    conds = [c for c in cells if c.startswith(rep + "/") and cells[c]["n"]]
    n = np.asarray([int(c.split("/")[1]) for c in conds])
    acc = np.asarray([cells[c]["accuracy"] for c in conds])
    err = np.abs(np.asarray([cells[c]["ci"] for c in conds]).T - acc)
    ax.errorbar(n, acc, yerr=err, fmt="o", color=colour, capsize=3, label=rep)
    if rep in fits:
      x = np.linspace(np.log10(n.min()) - 0.2, np.log10(n.max()) + 0.2, 100)
      f = fits[rep]
      ax.plot(10 ** x, psychometric(x, threshold=f["threshold"], slope=f["slope"],
                                    lapse=f["lapse"], at=results["threshold_accuracy"]),
              color=colour)
  ax.axhline(CHANCE, color="grey", ls=":", lw=1)
  ax.axhline(results["threshold_accuracy"], color="grey", ls="--", lw=0.8)
  ax.set(xscale="log", xlabel="phosphenes (N)", ylabel="proportion correct", ylim=(0, 1.02),
         title="Which pose? 4 choices")
  ax.legend(frameon=False, fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


def analyze(workdir, database_url: str, *, out: pathlib.Path,
            bootstrap: int | None = None) -> dict[str, Any]:
  """Reads the responses, writes results.json, table.txt and psychometric.png in `out`."""
  manifest = design.load_manifest(workdir)
  config = manifest["config"]
  store = store_lib.Store(database_url)
  try:
    rows = store_lib.export_rows(store, manifest)
  finally:
    store.close()
  if not rows:
    raise ValueError(f"no responses in {store.engine.url.render_as_string(hide_password=True)}")
  excluded = exclusions(rows, config["exclusion"])
  kept = [r for r in rows if r["participant_id"] not in excluded and r["phase"] == "main"
          and r["rt_ms"] >= config["exclusion"]["min_rt_ms"]]
  choice = [r for r in kept if r["task"] == "choice"]
  clicks = [r for r in kept if r["task"] == "click"]
  if not choice:
    raise ValueError("no main choice trials left after the exclusions")
  conditions = manifest["design"]["conditions"]
  samples = bootstrap or config["analysis"]["bootstrap"]
  results = {
      "participants": len({r["participant_id"] for r in rows}),
      "participants_included": len({r["participant_id"] for r in choice}),
      "excluded": excluded, "exclusion_rule": config["exclusion"],
      "threshold_accuracy": config["analysis"]["threshold_accuracy"], "bootstrap": samples,
      "choice": choice_analysis(choice, conditions, config=config, samples=samples,
                                seed=config["analysis"]["seed"]),
      "mixed_model": mixed_model(choice),
      "rt": _summaries([r for r in choice if r["correct"]], "rt_ms", conditions),
      "click": _summaries(clicks, "pckh", conditions),
  }
  results["observer"] = observer_comparison(choice, manifest, results["choice"]["cells"])
  out.mkdir(parents=True, exist_ok=True)
  storage.write_text(out / "results.json", json.dumps(results, indent=1))
  results["text"] = format_table(results)
  storage.write_text(out / "table.txt", results["text"] + "\n")
  write_figure(results, out / "psychometric.png")
  return results
