"""--mode=stats: label statistics without embeddings, on known cases."""

import json
import os

import numpy as np
import pytest

from annojax import jobs
from annojax import label_stats
from annojax.corpora import ratings as ratings_lib
from configs import whiser

HERE = os.path.dirname(os.path.abspath(__file__))
WHISER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared",
                      "data", "whiser")


def _planted():
  """40 clips on a 1-7 scale rated by a, b (= the clip's true value x) and
  c (= x + 1): the leave-one-out consensus of a is (x + x + 1) / 2, of c
  it is x."""
  x = np.tile([2.0, 3.0, 4.0, 5.0], 10)
  clips = [f"c{i}" for i in range(len(x))]
  rows = [(c, a, v + (1.0 if a == "c" else 0.0))
          for c, v in zip(clips, x) for a in "abc"]
  clip, ann, raw = zip(*rows)
  return ratings_lib.make_ratings(
      clip, ann, ["s"] * len(clip),
      ratings_lib.rescale(np.array(raw)[:, None], 1, 7), ("activation",),
      scale=(1, 7), dropped={"some reason": 2})


def test_leave_one_out_consensus_bias_and_agreement_of_planted_raters():
  t = _planted()
  loo, others = label_stats.leave_one_out(t)
  assert (others == 2).all()
  raw_loo = ratings_lib.unscale(loo[:, 0], 1, 7)
  x = ratings_lib.unscale(t.values[:, 0], 1, 7)
  a = t.annotator == "a"
  np.testing.assert_allclose(raw_loo[a], x[a] + 0.5, atol=1e-5)
  s = label_stats.describe(t, min_ratings=40)
  assert (s["ratings"], s["clips"], s["annotators"]) == (120, 40, 3)
  assert s["raters_per_clip"] == {"min": 3, "median": 3, "mean": 3, "max": 3}
  assert s["scale_use"]["activation"] == {"2": 20, "3": 30, "4": 30,
                                          "5": 30, "6": 10}
  ag = s["agreement"]["activation"]
  assert ag["annotators"] == 3
  np.testing.assert_allclose(ag["pearson_mean"], 1.0, atol=1e-6)
  # Biases vs the leave-one-out consensus: a, b -0.5, c +1 (corpus scale).
  np.testing.assert_allclose(ag["bias_sd"], np.std([-0.5, -0.5, 1.0]),
                             atol=1e-5)
  var = np.var([2.0, 3.0, 4.0, 5.0])  # 1.25
  want_a = 2 * var / (2 * var + 0.25)  # CCC(x, x + .5)
  want_c = 2 * var / (2 * var + 1.0)  # CCC(x + 1, x): c's others are a, b
  np.testing.assert_allclose(ag["ccc_mean"], (2 * want_a + want_c) / 3,
                             atol=1e-5)
  assert s["dropped"] == {"some reason": 2}
  # Every rater's s.d. equals the consensus's (all shift x): ratio 1, and
  # the three rating s.d.s are equal (x's s.d. on the corpus scale).
  np.testing.assert_allclose(ag["sd_ratio_median"], 1.0, atol=1e-6)
  np.testing.assert_allclose(ag["scale_sd"], 0.0, atol=1e-5)
  # Best single peer on the 40 shared clips: a and b are each other's
  # (CCC 1); c's best is a or b (CCC(x + 1, x) = want_c).
  peer = s["best_peer"]["activation"]
  assert peer["annotators"] == 3 and peer["peers_median"] == 2
  np.testing.assert_allclose(peer["best_ccc_mean"], (2 + want_c) / 3,
                             atol=1e-5)
  assert label_stats.best_peer(t, min_common=41)["activation"][
      "annotators"] == 0
  assert label_stats.describe(t, min_ratings=41)["agreement"][
      "activation"] == {"annotators": 0}


def test_stats_mode_reads_labels_without_embeddings(tmp_path):
  config = whiser.get_config()
  config.data.files.source.path = os.path.join(HERE, "fixtures", "formats",
                                               "msp_podcast")
  config.data.min_ratings = 2
  out = jobs.run(config, str(tmp_path))["stats"]["whiser"]
  assert (out["ratings"], out["clips"], out["annotators"]) == (10, 5, 4)
  assert out["dropped"] == {
      "no dominance value": 1,
      "merged: the same annotator rated the clip again (averaged)": 1}
  saved = json.load(open(tmp_path / "stats" / "label_stats.json"))
  assert saved["whiser"]["ratings"] == 10
  assert "| 10 | 5 | 4 |" in (tmp_path / "stats" / "label_stats.md"
                              ).read_text()
  assert (tmp_path / "stats" / "scale_use.png").stat().st_size > 1000


@pytest.mark.skipif(not os.path.isfile(os.path.join(WHISER,
                                                    "labels_detailed.csv")),
                    reason="no WHiSER labels under ../shared/data")
def test_whiser_statistics_match_the_independently_measured_ones():
  """../shared/data/whiser/README.md measured (workers with >= 30 ratings,
  vs the leave-one-out consensus): CCC .32 / .29, Pearson .40 / .35, bias
  s.d. .71 / .31 for activation / valence."""
  config = whiser.get_config()
  config.data.files.source.path = WHISER
  s = label_stats.describe(label_stats.tables(config)["whiser"], 30)
  assert (s["ratings"], s["clips"], s["annotators"]) == (27156, 5427, 33)
  assert s["ratings_per_annotator"]["median"] == 818
  ag = s["agreement"]
  for d, ccc, r, bias in (("activation", .32, .40, .71),
                          ("valence", .29, .35, .31)):
    assert abs(ag[d]["ccc_mean"] - ccc) < 0.005, d
    assert abs(ag[d]["pearson_mean"] - r) < 0.005, d
    assert abs(ag[d]["bias_sd"] - bias) < 0.005, d
