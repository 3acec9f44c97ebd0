"""Plots written next to the result tables (matplotlib, no display)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

_CURVES = {"most_similar": "most-similar head", "mixture": "mixture of heads",
           "eb": "empirical-Bayes head", "linear_fit": "linear fit",
           "calibrated": "calibrated aggregate",
           "finetune": "fine-tuned mapped head",
           "blended": "blended rule (enroll's default)"}
# Rows without an enrollment size: horizontal lines, each its own colour
# and dash (none of the curves' colours: C0-C5 and the blended rule's
# cyan), the baselines heaviest.
_LINES = {"aggregate": ("aggregate", "black", "-", 1.8),
          "aggregate_rescaled": ("aggregate at the raters' scale", "black",
                                 "--", 1.8),
          "mean_heads": ("mean of heads", "tab:olive", ":", 1.4),
          "random_head": ("random head", "tab:gray", "-.", 1.2),
          "oracle": ("oracle head (chosen on test)", "tab:pink", "--", 1.0),
          "oracle_chance": ("oracle by chance (clips shuffled)", "tab:pink",
                            ":", 1.0)}


def ccc_vs_enrollment(results: dict, dims, sizes, path: str):
  """The first metric (CCC_ind; agreement_ind for categorical heads) vs
  enrollment size, one panel per dimension, +- std bands."""
  rows = results["rows"]
  metric = results["protocol"]["metrics"][0]
  names = ["all" if k == 0 else str(k) for k in sizes]
  x = np.arange(len(names))
  fig, axes = plt.subplots(1, len(dims), figsize=(5.5 * len(dims), 4.6),
                           squeeze=False)
  for ax, d in zip(axes[0], dims):
    for i, (kind, label) in enumerate(_CURVES.items()):
      keys = [f"{kind}@{n}" for n in names]
      if not all(k in rows for k in keys):
        continue
      m = np.array([rows[k][metric][d]["mean"] for k in keys])
      s = np.array([rows[k][metric][d]["std"] for k in keys])
      heavy = kind == "blended"  # the default rule stands out
      color = "tab:cyan" if heavy else f"C{i}"
      ax.plot(x, m, marker="osD^vP*"[i], color=color, label=label,
              lw=2.6 if heavy else 1.5, zorder=3 if heavy else 2)
      ax.fill_between(x, m - s, m + s, color=color, alpha=0.08)
    for row, (label, color, dash, width) in _LINES.items():
      if row in rows:
        ax.axhline(rows[row][metric][d]["mean"], ls=dash, lw=width,
                   color=color, label=label)
    _label(ax, x, names, "enrollment clips", metric, d)
  _legend_and_save(fig, axes, path, ncol=4, bottom=0.17)


def _label(ax, x, names, xlabel, ylabel, title):
  ax.set_xticks(x, names)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)


def _legend_and_save(fig, axes, path, ncol, bottom):
  """One legend under the panels (the first panel's entries), saved."""
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8,
             frameon=False)
  fig.tight_layout(rect=(0, bottom, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


_ADAPTIVE = {"most_similar": "most-similar head", "mixture": "mixture",
             "eb": "empirical Bayes"}


def adaptive_vs_random(rows: dict, metric: str, dims, sizes, path: str,
                       title: str = ""):
  """CCC_ind vs the number of rated clips: each enrollment rule on random
  clips (solid) and adaptively chosen clips (dashed, same colour), the
  oracle head as the ceiling, with its chance level where the results
  have it (when the two meet, as on NSC, the oracle is luck, no ceiling),
  and the aggregate model for reference."""
  ks = sorted(k for k in sizes if k > 0)
  fig, axes = plt.subplots(1, len(dims), figsize=(5.5 * len(dims), 4.6),
                           squeeze=False)
  for ax, d in zip(axes[0], dims):
    for i, (kind, label) in enumerate(_ADAPTIVE.items()):
      for prefix, style, how in (("", "-", "random"),
                                 ("adaptive_", "--", "adaptive")):
        keys = [f"{prefix}{kind}@{k}" for k in ks]
        if not all(k in rows for k in keys):
          continue
        m = np.array([rows[k][metric][d]["mean"] for k in keys])
        ax.plot(ks, m, style, marker="o", ms=3, color=f"C{i}",
                label=f"{label}, {how} clips")
    for row, style, color in (("oracle", ":", "k"), ("oracle_chance", ":",
                                                     "0.6"),
                              ("aggregate", "-.", "0.5")):
      if row in rows:
        ax.axhline(rows[row][metric][d]["mean"], ls=style, lw=1.2,
                   color=color, label=_LINES[row][0])
    _label(ax, ks, ks, "rated clips", metric, f"{title}{d}")
  _legend_and_save(fig, axes, path, ncol=3, bottom=0.16)


def scale_use(stats: dict, path: str):
  """Bar chart of how often each scale value was given: one row of panels
  per corpus, one panel per dimension (label_stats.describe's output)."""
  names = list(stats)
  dims = max(len(s["scale_use"]) for s in stats.values())
  fig, axes = plt.subplots(len(names), dims, squeeze=False,
                           figsize=(3.6 * dims, 2.8 * len(names)))
  for row, name in zip(axes, names):
    for ax, (d, use) in zip(row, stats[name]["scale_use"].items()):
      total = max(sum(use.values()), 1)
      ax.bar(range(len(use)), [v / total for v in use.values()])
      ax.set_xticks(range(len(use)), list(use), fontsize=7,
                    rotation=0 if len(use) <= 9 else 45)
      ax.set_title(f"{name}: {d}", fontsize=9)
      ax.set_ylabel("share of ratings", fontsize=8)
    for ax in row[len(stats[name]["scale_use"]):]:
      ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


_DISTRIBUTIONS = {"heads_kde": ("individual model (KDE of heads)", "C0"),
                  "aggregate_sd": ("aggregate + global s.d.", "black"),
                  "aggregate_spread": ("aggregate + spread output", "C2"),
                  "source_distribution": ("source distribution", "0.55")}


def on_rating_scale(data: dict) -> tuple[np.ndarray, float, float]:
  """(x, bar width, half the scale's range) of rating_distributions' bars:
  Likert levels or bin centres, from [-1, 1] to the corpus's own scale
  (data["scale"], (low, high); None: [-1, 1]). An s.d. on [-1, 1] times
  the half range is one on the corpus's scale."""
  edges = np.asarray(data["edges"])
  x = (np.asarray(data["levels"]) if data["levels"] is not None
       else (edges[1:] + edges[:-1]) / 2)
  width = np.diff(edges).min() * (0.8 if data["levels"] is None else 0.4)
  lo, hi = data.get("scale") or (-1.0, 1.0)
  half = (hi - lo) / 2
  return lo + (x + 1) * half, width * half, half


def rating_distributions(data: dict, dims, out_dir: str):
  """distribution_examples.png: predicted vs empirical rating distributions
  of a few target clips (rows: clips from the least to the most
  disagreed-on; bars: the clip's ratings), and sd_predicted_vs_actual.png:
  each row's predicted s.d. against the s.d. of each clip's ratings
  (rating_distributions.plot_data)."""
  rows = data["rows"]
  x, width, half = on_rating_scale(data)
  lo, hi = data.get("scale") or (-1.0, 1.0)
  n = len(data["clip_ids"])
  fig, axes = plt.subplots(n, len(dims), squeeze=False,
                           figsize=(4.6 * len(dims), 2.1 * n))
  for i, clip in enumerate(data["clip_ids"]):
    for j, d in enumerate(dims):
      ax = axes[i][j]
      ax.bar(x, data["empirical"][i, j], width=width, color="0.85",
             label="the clip's ratings")
      for row, (label, color) in _DISTRIBUTIONS.items():
        if row in rows:
          ax.plot(x, rows[row]["masses"][i, j], marker=".", color=color,
                  lw=1.4, label=label)
      ax.set_title(f"{clip} ({data['counts'][i]} ratings): {d}", fontsize=8)
      ax.tick_params(labelsize=7)
      if i == n - 1:
        ax.set_xlabel(f"rating (the corpus's scale, {lo:g}-{hi:g})",
                      fontsize=8)
  _legend_and_save(fig, axes, os.path.join(out_dir,
                                            "distribution_examples.png"),
                   ncol=3, bottom=0.6 / n)
  fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 4.6),
                           squeeze=False)
  for j, d in enumerate(dims):
    ax, truth = axes[0][j], data["sd_true"][:, j] * half
    for row, (label, color) in _DISTRIBUTIONS.items():
      if row in rows and row != "source_distribution":
        ax.scatter(truth, rows[row]["sd"][:, j] * half, s=5, alpha=0.5,
                   color=color, label=label)
    top = np.nanmax(truth)
    ax.plot([0, top], [0, top], ":", color="0.4", lw=1, label="identity")
    ax.set_xlabel(f"s.d. of the clip's ratings (scale {lo:g}-{hi:g})")
    ax.set_ylabel("predicted s.d.")
    ax.set_title(d)
    ax.grid(alpha=0.3)
  _legend_and_save(fig, axes, os.path.join(out_dir,
                                            "sd_predicted_vs_actual.png"),
                   ncol=2, bottom=0.16)
