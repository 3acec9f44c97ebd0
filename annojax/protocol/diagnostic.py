"""Can the target's test ratings tell the pre-trained heads apart at all?

The oracle row picks each new annotator's best head on their own test
ratings; oracle_chance does the same with the test clips shuffled among
the ratings, so that it can only pick by luck. Where the oracle is not
above its chance level, no head fits an annotator's test ratings better
than a head fits them by luck: the heads carry no information about these
annotators that the test could see, and no individual row is expected to
beat the consensus (the regime of sparse raters such as NSC's). The test:
one-sided paired t-test of oracle > oracle_chance over the runs, per
column.
"""

from __future__ import annotations

import numpy as np

from annojax import metrics


def distinguishable(results: dict) -> dict | None:
  """{column: {oracle, chance, p (one-sided), distinguishable}} and a
  sentence, from the per-run cells of the oracle rows; None where either
  row was not evaluated."""
  rows, p = results["rows"], results["protocol"]
  if "oracle" not in rows or "oracle_chance" not in rows:
    return None
  metric = p["metrics"][0]
  out = {}
  for d in p["columns"]:
    o = np.asarray(rows["oracle"][metric][d]["runs"], np.float64)
    c = np.asarray(rows["oracle_chance"][metric][d]["runs"], np.float64)
    two = metrics.paired_tests(o, c)["t_p"]
    diff = float(np.mean(o - c))
    one = (two / 2 if diff > 0 else 1 - two / 2) if np.isfinite(two) \
        else float("nan")
    out[d] = {"oracle": float(o.mean()), "chance": float(c.mean()),
              "p_one_sided": float(one),
              "distinguishable": bool(one < metrics.MARK_LEVEL)}
  return {"columns": out, "test": "one-sided paired t-test, oracle > "
          "oracle_chance, over runs", "sentence": sentence(out)}


def sentence(cols: dict) -> str:
  def part(d, v):
    p = "n/a" if not np.isfinite(v["p_one_sided"]) else \
        f"{v['p_one_sided']:.2g}"
    return f"{d} {v['oracle']:.3f} vs {v['chance']:.3f}, p = {p}"
  yes = [d for d, v in cols.items() if v["distinguishable"]]
  facts = "; ".join(part(d, v) for d, v in cols.items())
  head = ("Can the new annotators' test ratings tell the pre-trained heads "
          "apart? (the oracle, each annotator's best head on their test "
          "ratings, against its chance level, the same with the test clips "
          f"shuffled; one-sided paired t-test over runs: {facts}) ")
  if not yes:
    return head + ("No: the oracle is not above its chance level; the test "
                   "ratings give no evidence that the heads carry anything "
                   "about these annotators, and individual rows are not "
                   "expected to beat the consensus here.")
  if len(yes) == len(cols):
    return head + ("Yes: the oracle is above its chance level, so the heads "
                   "carry information about these annotators; individual "
                   "rows can beat the consensus here.")
  no = [d for d in cols if d not in yes]
  return head + (f"On {', '.join(yes)} only: there individual rows can beat "
                 f"the consensus; on {', '.join(no)} they are not expected "
                 "to.")
