"""results.md: the protocol's tables, their marks and legend."""

from __future__ import annotations

from annojax import distributions as dist_lib
from annojax import metrics
from annojax.data import prepare as prepare_lib
from annojax.protocol import adaptive_compare
from annojax.protocol import rows as rows_lib
from annojax.protocol import summary

_LABEL = {"ccc_ind": "CCC_ind", "ccc_con": "CCC_con",
          "agreement_ind": "agreement_ind", "loglik_ind": "loglik_ind",
          "nll": "NLL", "jsd": "JSD", "sd_ccc": "s.d. CCC",
          "coverage_50": "cov50", "coverage_90": "cov90"}


def row_order(names) -> list[str]:
  """Table order: baselines, enrollment rules (each rule at every k, its
  adaptive rows after it), upper bounds, chance levels; registration order
  within each. Rows not registered here go after the rules."""
  index = {n: i for i, n in enumerate(rows_lib.REGISTRY)}

  def key(n):
    kind, _, size = n.partition("@")
    base = kind.removeprefix(rows_lib.ADAPTIVE)
    row = rows_lib.REGISTRY.get(base)
    section = rows_lib.SECTIONS.index(row.section) if row else 1
    return (section, index.get(base, len(index)), kind != base,
            1e9 if size == "all" else int(size or 0))
  return sorted(names, key=key)


def _overlap_line(shared) -> str:
  if not shared:
    return ("Leakage check: not run for this table (no prepare in this "
            "call).")
  counts = ", ".join(f"{shared[k]} {k}" for k in prepare_lib.OVERLAP_KINDS)
  line = (f"Leakage check: the target shares {counts} with the "
          "pre-training data.")
  if shared.get("allowed"):
    line += (" **Overlap allowed by config.data.allow_overlap "
             f"({', '.join(shared['allowed'])}): the test material is not "
             "all unseen.**")
  return line


def _mark(cell: dict, test: str, sign: str) -> str:
  """`sign` + `^` / `v` where the cell's test gives an adjusted p < 0.05
  (summary.adjust_table; the raw p in results from before it) and the row
  is above / below the aggregate (its mean paired difference)."""
  if not summary.mark_p(cell, test) < metrics.MARK_LEVEL:  # NaN: no test
    return ""
  diff = cell.get("difference")  # absent in results from before it
  return sign + ("" if diff is None else "^" if diff > 0 else "v")


def _table(rows: dict, names, dims, seed_mark: bool = True) -> list[str]:
  head = "| row | " + " | ".join(f"{_LABEL[m]} {d}" for m in names
                                 for d in dims) + " |"
  lines = [head, "|" + "---|" * (1 + len(names) * len(dims))]
  for row in row_order(rows):
    cells = []
    for metric in names:
      for d in dims:
        v = rows[row][metric][d]
        star = _mark(v, "t_p", "*")
        if seed_mark:
          star += _mark(v, "seed_t_p", "+")
        cells.append(f"{v['mean']:.3f} +- {v['std']:.3f}{star}")
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return lines


def _legend(names) -> list[str]:
  """One line per kind of row present (its registered doc); @k = k random
  enrollment clips (all = every pool clip), adaptive_ = chosen
  adaptively."""
  kinds = []
  for n in names:
    kind = n.partition("@")[0].removeprefix(rows_lib.ADAPTIVE)
    if kind not in kinds and kind in rows_lib.REGISTRY:
      kinds.append(kind)
  lines = ["Rows (@k: k enrollment clips drawn at random from the "
           "annotator's clips of training-fold speakers, all: every one; "
           "adaptive_: the same rule on adaptively chosen clips):", ""]
  return lines + [f"- {k}: {rows_lib.REGISTRY[k].doc}" for k in kinds]


def _seed_test_line(seeds: dict) -> str:
  if seeds["n"] < metrics.MIN_PAIRS:
    return (f"- `+^` / `+v`: no test over seeds: n = {seeds['n']} seeds, "
            f"fewer than {metrics.MIN_PAIRS} (set config.eval.seeds).")
  return (f"- `+^` / `+v`: paired t-test over seeds; unit: {seeds['unit']}; "
          f"n = {seeds['n']}.")


def _level(tests: dict) -> str:
  """What a mark means: p < 0.05 after the table's correction."""
  fix = tests.get("correction")
  if not fix:  # results from before the correction
    return "p < 0.05, uncorrected for the number of cells"
  return (f"p < {metrics.MARK_LEVEL} after {fix['method']} over the "
          f"table's comparisons of each test ({fix['comparisons']['t_p']} "
          "over runs): at most ~5% of the marks are expected to be false; "
          "raw and adjusted p in the JSON")


def _header(results: dict) -> list[str]:
  p, tests = results["protocol"], results["tests"]
  lines = [f"# Cross-corpus evaluation ({p['runs']} runs: {p['seeds']} seeds "
           f"x {p['folds']} folds; {p['pretrained_heads']} pre-trained heads, "
           f"{p['target_annotators']} target annotators; score "
           f"{p['score']}, top-{p['top_k']})", "",
           "Mean +- std over runs. Tests vs the aggregate row, paired by run; "
           "`^` / `v`: the row is above / below the aggregate ("
           + _level(tests) + "):",
           f"- `*^` / `*v`: paired t-test over runs; unit: "
           f"{tests['runs']['unit']}; n = {tests['runs']['n']} "
           "(Wilcoxon p in the JSON).",
           _seed_test_line(tests["seeds"]),
           "", _overlap_line(p.get("overlap_with_pretraining")), ""]
  for w in p.get("warnings", []):
    lines += [f"**Warning: {w}.**", ""]
  return lines


def _over_seeds(n: int, tests: dict, against: str) -> str:
  """What a table tested over n seeds says of its marks."""
  if n < metrics.MIN_PAIRS:
    return f"no test: n = {n} seeds, fewer than {metrics.MIN_PAIRS}"
  return (f"`*^` / `*v`: paired t-test vs {against} over seeds (n = {n}), "
          f"{_level(tests)}")


def _pooled(results: dict, names, dims) -> list[str]:
  n = results["pooled"]["tests"]["runs"]["n"]
  test = _over_seeds(n, results["pooled"]["tests"], "aggregate")
  lines = ["", "Pooled over folds: per seed, each annotator's "
           "out-of-fold predictions from all folds, then one CCC_ind per "
           f"annotator over that set. Mean +- std over seeds; {test}.", ""]
  return lines + _table(results["pooled"]["rows"], names, dims,
                        seed_mark=False)


def _type_match(type_match: dict) -> list[str]:
  lines = ["", "Selected head shares the new annotator's latent type "
           "(synthetic ground truth):", "",
           "| enrollment clips | same type | chance |", "|---|---|---|"]
  return lines + [f"| {k} | {v['selected_same_type']:.3f} | "
                  f"{v['chance']:.3f} |" for k, v in type_match.items()]


HEADLINE = ("aggregate", "aggregate_rescaled", "blended", "most_similar",
            "oracle")


def headline(results: dict, path: str) -> str:
  """A few lines for the terminal: the first metric of the reference rows
  (at the largest enrollment size) and where the whole table is."""
  p = results["protocol"]
  dims, metric = p["columns"], p["metrics"][0]
  rows = results["rows"]
  lines = [_header(results)[0].lstrip("# "),
           f"{metric}, mean over runs: " + ", ".join(dims)]
  for name in HEADLINE:
    sized = sorted((r for r in rows if r.split("@")[0] == name and "@" in r),
                   key=lambda r: (r.endswith("@all"), len(r), r))
    row = name if name in rows else (sized[-1] if sized else None)
    if row is not None:
      lines.append(f"  {row:24s} " + "  ".join(
          f"{rows[row][metric][d]['mean']:+.3f}" for d in dims))
  with open(path) as f:
    n = sum(1 for _ in f)
  lines.append(f"every row, test and table ({n} lines): {path}")
  return "\n".join(lines) + "\n"


def to_markdown(results: dict) -> str:
  p = results["protocol"]
  dims, names = p["columns"], p["metrics"]
  lines = _header(results)
  if "heads_distinguishable" in results:
    lines += [results["heads_distinguishable"]["sentence"], ""]
  lines += _table(results["rows"], names, dims)
  lines += [""] + _legend(row_order(results["rows"]))
  if "pooled" in results:
    lines += _pooled(results, names, dims)
  for table, unit in (("per_fold", "paired over runs"),
                      ("pooled", "pooled, paired over seeds")):
    if table in results.get("adaptive_vs_random", {}):
      lines += [""] + adaptive_compare.adaptive_markdown(
          results["adaptive_vs_random"][table], dims, unit,
          "CCC_ind" if names[0] == "ccc_ind" else names[0])
  if "type_match" in results:
    lines += _type_match(results["type_match"])
  if "distributions" in results:
    lines += distribution_markdown(results["distributions"], dims)
  return "\n".join(lines) + "\n"


def distribution_markdown(part: dict, dims) -> list[str]:
  """The rating-distribution table (protocol/rating_distributions.py), its
  legend, and the individual model against each other row."""
  f, n = part["facts"], part["tests"]["runs"]["n"]
  per = f["ratings_per_clip"]
  test = _over_seeds(n, part["tests"], rows_lib.DISTRIBUTION_REFERENCE)
  lines = ["", f"## Rating distributions: {f['clips']} target clips with >= "
           f"{f['min_ratings']} ratings ({f['ratings']} ratings; per clip "
           f"median {per['median']:g}, {per['min']}-{per['max']}); target "
           f"scale {f['target_scale']}", "",
           "Per clip and dimension, a predicted distribution of its ratings "
           "on the scale. NLL: negative log-likelihood of the clips' ratings "
           "(nats per rating: of the rated level on a Likert scale, else a "
           "density on [-1, 1]), lower is better; JSD: Jensen-Shannon "
           "divergence (bits) to each clip's histogram of ratings (cells: "
           f"{f['jsd_cells']}), lower is better; s.d. CCC: predicted vs "
           "actual s.d. of each clip's ratings (predicting disagreement), "
           "higher is better; cov50 / cov90: share of ratings inside the "
           "central 50% / 90% predicted interval, nearer 0.50 / 0.90 is "
           "better (on a Likert scale the interval's ends are levels, so a "
           "calibrated distribution covers at least that share). Widths and "
           "the spread output are tuned on the source's held-out clips. Mean "
           f"+- std over seeds; {test}.", ""]
  lines += _table(part["rows"], list(dist_lib.METRICS), dims, seed_mark=False)
  lines += [""] + [f"- {k}: {rows_lib.REGISTRY[k].doc}"
                   for k in row_order(part["rows"])
                   if k in rows_lib.REGISTRY]
  if "model_vs" in part:
    lines += ["", "The individual model (heads_kde) minus each other row, "
              "mean paired difference over seeds (raw paired t-test p):", "",
              "| heads_kde vs | " + " | ".join(
                  f"{_LABEL[m]} {d}" for m in dist_lib.METRICS for d in dims)
              + " |", "|" + "---|" * (1 + len(dist_lib.METRICS) * len(dims))]
    for other, cells in part["model_vs"].items():
      lines.append(f"| {other} | " + " | ".join(
          f"{cells[m][d]['difference']:+.3f} (p {cells[m][d]['t_p']:.3g})"
          for m in dist_lib.METRICS for d in dims) + " |")
  return lines
