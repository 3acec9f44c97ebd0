"""Listening tests (NSC layout) and openSMILE CSV features: the reader, the
partition into pre-training and target material, and configs/nsc.py.

The repository's fixture (tests/fixtures/formats/nsc: NSC's exact columns
and quoting, values made up) always runs; the real NSC files
(../shared/data/nsc) are read where present and skipped otherwise.
"""

import os

import numpy as np
import pytest

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import embeddings
from annojax.corpora import listening_test
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import readers
from annojax.data import prepare
from configs import nsc as nsc_config

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "formats", "nsc")
REAL = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data",
                    "nsc")
needs_real = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "SC_ratings.csv")),
    reason="no ../shared/data/nsc")
COLUMNS = {"activation": "aktiv", "valence": "angenehm"}


def _feats(root):
  return ",".join(os.path.join(root, f"eGeMAPSv01a_88_{g}spk.csv")
                  for g in ("male", "female"))


def _read(root, **kw):
  return listening_test.read(os.path.join(root, "SC_ratings.csv"), COLUMNS,
                             **kw)


def test_fixture_values_speakers_and_name_variants():
  t = _read(FIXTURE)
  assert len(t) == 29 and len(set(t.annotator)) == 6
  assert t.dims == ("activation", "valence")
  # Rater001 on m001: aktiv 0, angenehm 100 on the 0-100 slider.
  i = np.flatnonzero((t.annotator == "Rater001") &
                     (t.clip == "m001_alpha_stimulus"))
  np.testing.assert_allclose(t.values[i[0]], [-1.0, 1.0])
  assert set(t.speaker) == {"m001", "w002", "m003", "w004", "m005", "w006"}
  # The ratings' `_d5` stimulus is the features' `_stimulus` clip.
  assert "w004_delta_stimulus" in set(t.clip)
  assert not any(c.endswith("_d5") for c in t.clip)
  ids, emb = embeddings.read_embeddings(_feats(FIXTURE))
  corpus = corpus_lib.join("nsc", t, ids, emb)
  assert len(corpus.clips) == 6 and corpus.embeddings.shape == (6, 88)


@pytest.mark.parametrize("root", [
    pytest.param(FIXTURE, id="fixture"),
    pytest.param(REAL, id="real", marks=needs_real)])
@pytest.mark.parametrize("seed", [0, 1])
def test_partition_shares_nothing_and_loses_only_crossing_ratings(root, seed):
  whole = _read(root)
  parts = {p: _read(root, partition=dict(part=p, fraction=2 / 3, seed=seed))
           for p in ("source", "target")}
  src, tgt = parts["source"], parts["target"]
  for col in ("annotator", "speaker", "clip"):
    assert not set(getattr(src, col)) & set(getattr(tgt, col)), col
  # Each part counts every rating it leaves out (nothing lost silently).
  for p in parts.values():
    assert sum(p.dropped.values()) == len(whole) - len(p)
  assert 0 < len(src) + len(tgt) < len(whole)  # crossing ratings exist
  n_l = len(set(whole.annotator))
  assert len(set(src.annotator)) <= round(2 / 3 * n_l)
  assert len(set(src.annotator) | set(tgt.annotator)) <= n_l
  # A pair kept in a part has the part's listener AND speaker.
  src_l, src_s = set(src.annotator), set(src.speaker)
  kept = {(a, c) for a, c in zip(whole.annotator, whole.clip)
          if a in src_l and c.split("_")[0] in src_s}
  assert kept == set(zip(src.annotator, src.clip))


def test_partition_seed_changes_the_split():
  a = _read(REAL if os.path.isdir(REAL) else FIXTURE,
            partition=dict(part="source", seed=0))
  b = _read(REAL if os.path.isdir(REAL) else FIXTURE,
            partition=dict(part="source", seed=3))
  assert set(a.annotator) != set(b.annotator)


def test_errors_name_the_file_and_line(tmp_path):
  src = os.path.join(FIXTURE, "SC_ratings.csv")
  lines = open(src).read().splitlines()
  with pytest.raises(ratings_lib.RatingsError, match=r"missing column.*'x'"):
    listening_test.read(src, {"activation": "x"})
  bad = tmp_path / "SC_ratings.csv"
  header = lines[0].split(",")
  row = lines[3].split(",")
  row[header.index("aktiv")] = "laut"
  bad.write_text("\n".join([lines[0], lines[1], lines[2], ",".join(row)]))
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"SC_ratings.csv:4: 'laut' is not a number"):
    listening_test.read(str(bad), COLUMNS)
  row[header.index("aktiv")] = "130"
  bad.write_text("\n".join([lines[0], ",".join(row)]))
  with pytest.raises(ratings_lib.RatingsError, match="no usable ratings"):
    listening_test.read(str(bad), COLUMNS)
  with pytest.raises(ratings_lib.RatingsError, match=r":2: speaker regex"):
    listening_test.read(src, COLUMNS, speaker=r"^(\d+)$")
  with pytest.raises(ValueError, match="part='train'"):
    listening_test.read(src, COLUMNS, partition=dict(part="train"))


def test_opensmile_csv_syntaxes(tmp_path):
  names = ["F0semitoneFrom27.5Hz_sma3nz_amean", "loudness_sma3_amean"]
  # SMILExtract -csvoutput: ';', quoted instance names, a frameTime column.
  (tmp_path / "smile.csv").write_text(
      "name;frameTime;" + ";".join(names) + "\n"
      "'a.wav';0.000000;30.5;0.75\n'sub/b';0.000000;28;1.5e-1\n")
  # The opensmile package's DataFrame.to_csv(): file, start, end.
  (tmp_path / "py.csv").write_text(
      "file,start,end," + ",".join(names) + "\n"
      "/x/c.wav,0 days,0 days 00:00:01,31,0.5\n")
  ids, emb, got = embeddings.read_opensmile_csv(f"{tmp_path}/smile.csv,{tmp_path}/py.csv")
  assert ids.tolist() == ["a", "b", "c"] and got == names
  np.testing.assert_allclose(emb, [[30.5, .75], [28, .15], [31, .5]])
  (tmp_path / "other.csv").write_text("name,jitter\nd,0.01\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"other.csv: feature columns differ"):
    embeddings.read_opensmile_csv(f"{tmp_path}/py.csv,{tmp_path}/other.csv")
  (tmp_path / "bad.csv").write_text(
      "name," + ",".join(names) + "\ne,1,x\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"bad.csv:2: loudness_sma3_amean='x'"):
    embeddings.read_opensmile_csv(str(tmp_path / "bad.csv"))
  (tmp_path / "dup.csv").write_text(
      "name," + ",".join(names) + "\nf.wav,1,2\nf,1,2\n")
  with pytest.raises(ratings_lib.RatingsError, match=r"share the clip"):
    embeddings.read_opensmile_csv(str(tmp_path / "dup.csv"))


@needs_real
def test_real_nsc_reads_whole_and_joins_every_clip():
  t = _read(REAL)
  assert len(t) == 4519 and len(set(t.annotator)) == 114
  assert len(set(t.clip)) == 300 and len(set(t.speaker)) == 300
  ids, emb, names = embeddings.read_opensmile_csv(_feats(REAL))
  assert emb.shape == (300, 88) and len(names) == 88
  assert names[0] == "F0semitoneFrom27.5Hz_sma3nz_amean"
  corpus = corpus_lib.join("nsc", t, ids, emb)  # every rated clip embedded
  assert len(corpus.clips) == 300
  assert "w296_avarua_stimulus" in set(corpus.clips)


@pytest.mark.parametrize("root", [
    pytest.param(FIXTURE, id="fixture"),
    pytest.param(REAL, id="real", marks=needs_real)])
def test_nsc_config_loads_disjoint_corpora(root):
  config = nsc_config.get_config(root)
  config.data.partition_seed = 1  # one reference moves both parts
  assert config.data.files.target.options.partition.seed == 1
  src, tgt = (readers.load(config.data.files[p])
              for p in ("source", "target"))
  counts = prepare.overlap(src.ratings, tgt.ratings)
  assert [counts[k] for k in prepare.OVERLAP_KINDS] == [0, 0, 0]
  assert src.embeddings.shape[1] == tgt.embeddings.shape[1] == 88
  if root == REAL:
    assert 35 <= len(set(tgt.ratings.annotator)) <= 39
    assert len(tgt.ratings) > 350 and len(src.ratings) > 1500
