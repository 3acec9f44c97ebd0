"""Corpus readers on small files written in each corpus's own format."""

import os

import ml_collections
import numpy as np
import pytest

from annojax.corpora import crema_d
from annojax.corpora import generic_csv
from annojax.corpora import iemocap
from annojax.corpora import msp_improv
from annojax.corpora import msp_podcast
from annojax.corpora import muse
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import readers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(os.path.dirname(ROOT), "shared", "data")


def _row(table, clip, annotator):
  i = np.flatnonzero((table.clip == clip) & (table.annotator == annotator))
  assert len(i) == 1, (clip, annotator)
  return table.values[i[0]], table.speaker[i[0]]


IEMOCAP_TXT = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()
A-F1:\tval 2; act 5; dom  1;\t(mildly aggravated)

[10.0100 - 11.3925]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]
A-E3:\tval 1; act 4; dom  3;\t()
A-E4:\tval ; act 3; dom  3;\t()
"""


def test_iemocap(tmp_path, caplog):
  d = tmp_path / "Session1" / "dialog" / "EmoEvaluation"
  d.mkdir(parents=True)
  (d / "Ses01F_impro01.txt").write_text(IEMOCAP_TXT)
  t = iemocap.read(str(tmp_path))
  assert t.dims == ("activation", "valence", "dominance")
  # The E4 line lacks valence only: kept with NaN there, dropped (with that
  # reason) only where a run uses valence. A-F1 is the actor's own rating.
  assert len(t) == 3 and "F1" not in t.annotator
  assert np.isnan(_row(t, "Ses01F_impro01_M001", "E4")[0][1])
  assert len(readers.select_dims(t, ("activation", "dominance"))) == 3
  assert len(readers.select_dims(t, ("activation", "valence"))) == 2
  v, spk = _row(t, "Ses01F_impro01_F000", "E3")
  np.testing.assert_allclose(v, [-0.5, 0.0, -0.5])  # act 2, val 3, dom 2
  assert spk == "Ses01_F"
  assert _row(t, "Ses01F_impro01_M001", "E3")[1] == "Ses01_M"
  t = iemocap.read(str(tmp_path), self_reports=True)
  np.testing.assert_allclose(_row(t, "Ses01F_impro01_F000", "self-F1")[0],
                             [1.0, -0.5, -1.0])
  assert "dropped 1 rating(s) with no valence value" in caplog.text
  # A line without the dom key: dominance missing, the rest kept.
  (d / "Ses01F_impro02.txt").write_text(
      "[1.0 - 2.0]\tSes01F_impro02_F000\tneu\t[2, 2, 2]\nA-E1:\tval 2; act 3;\t()\n")
  np.testing.assert_allclose(
      _row(iemocap.read(str(tmp_path)), "Ses01F_impro02_F000", "E1")[0],
      [0.0, -0.5, np.nan])
  (d / "Ses01F_impro02.txt").write_text(
      "[1.0 - 2.0]\tSes01F_impro02_F000\tneu\t[2, 2, 2]\nA-E1:\tdunno\t(val 2;)\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"Ses01F_impro02.txt:2: expected 'val x"):
    iemocap.read(str(tmp_path))


MSP_IMPROV_TXT = """UTD-IMPROV-S01A-F01-R-FM01.avi; N; A:3.000000; V:3.000000; D:3.000000; N:4.000000;
mturk_1; Neutral; Neutral; A:1.0; V:4.0; D:2.0; N:4.0;
mturk_2; Happy; Happy,Excited; A:5.0; V:5.0; D:3.0; N:5.0;

UTD-IMPROV-S02B-M02-T-MF05.avi; A; A:2.000000; V:2.000000; D:4.000000; N:3.000000;
mturk_1; Angry; Frustrated; A:2.0; V:; D:4.0; N:3.0;
mturk_3; Angry; Angry; A:2.0; V:1.0; D:5.0; N:3.0;
"""


def test_msp_improv_reverses_activation(tmp_path):
  (tmp_path / "Evalution.txt").write_text(MSP_IMPROV_TXT)
  t = msp_improv.read(str(tmp_path))
  assert len(t) == 4  # mturk_1's empty V on the 2nd clip is a missing value
  assert np.isnan(_row(t, "MSP-IMPROV-S02B-M02-T-MF05", "mturk_1")[0][1])
  v, spk = _row(t, "MSP-IMPROV-S01A-F01-R-FM01", "mturk_1")
  # Questionnaire A:1 = very active -> activation 5 -> +1 on [-1, 1].
  np.testing.assert_allclose(v, [1.0, 0.5, -0.5])
  assert spk == "F01"
  v, _ = _row(t, "MSP-IMPROV-S01A-F01-R-FM01", "mturk_2")
  assert v[0] == -1.0  # A:5 = calm
  assert _row(t, "MSP-IMPROV-S02B-M02-T-MF05", "mturk_3")[1] == "M02"
  (tmp_path / "Evalution.txt").write_text(MSP_IMPROV_TXT + "garbage line\n")
  with pytest.raises(ratings_lib.RatingsError, match=r"Evalution.txt:8:"):
    msp_improv.read(str(tmp_path))


def test_msp_podcast(tmp_path):
  (tmp_path / "labels_consensus.csv").write_text(
      "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
      "MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train\n"
      "MSP-PODCAST_0002_0010.wav,H,5.0,6.0,4.0,Unknown,Male,Test1\n")
  (tmp_path / "labels_detailed.csv").write_text(
      "FileName,WorkerID,EmoClass,EmoAct,EmoVal,EmoDom\n"
      "MSP-PODCAST_0001_0008.wav,WORKER0001,N,4,1,7\n"
      "MSP-PODCAST_0001_0008.wav,WORKER0002,N,,4,4\n"
      "MSP-PODCAST_0002_0010.wav,WORKER0001,H,7,6,4\n")
  assert len(msp_podcast.read(str(tmp_path))) == 2  # Split_Set Train
  t = msp_podcast.read(str(tmp_path), splits="all")
  assert len(t) == 3  # WORKER0002 lacks EmoAct only
  assert len(readers.select_dims(t, ("valence", "dominance"))) == 3
  assert len(readers.select_dims(t, ("activation", "valence"))) == 2
  v, spk = _row(t, "MSP-PODCAST_0001_0008", "WORKER0001")
  np.testing.assert_allclose(v, [0.0, -1.0, 1.0])
  assert spk == "127"
  assert _row(t, "MSP-PODCAST_0002_0010", "WORKER0001")[1] == "Unknown"
  with open(tmp_path / "labels_detailed.csv", "a") as f:
    f.write("MSP-PODCAST_9999_0001.wav,WORKER0003,N,4,4,4\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"labels_detailed.csv:5: clip 'MSP-PODCAST_9999"):
    msp_podcast.read(str(tmp_path), splits="all")


def test_muse(tmp_path):
  p = tmp_path / "muse_annotators.csv"
  p.write_text(
      "FileName,soft_act_labels,soft_val_labels,annotators\n"
      "sub01_u003.wav,\"[9, 5]\",\"[1, 5]\",\"['w7', 'self_report_sub01']\"\n"
      "sub02_u001.wav,\"[10, 5]\",\"[5, 5]\",\"['w7', 'w8']\"\n")
  t = muse.read(str(p))
  assert len(t) == 2  # 10 is outside 1-9: dropped and counted
  assert t.dropped == {"value outside the 1-9 scale": 1, (
      "speaker's self-report (options.self_reports=True keeps it)"): 1}
  v, spk = _row(t, "sub01_u003", "w7")
  np.testing.assert_allclose(v, [1.0, -1.0])
  assert spk == "sub01"
  p.write_text("FileName,soft_act_labels,annotators\nsub01_u003,[3],['w7']\n")
  with pytest.raises(ratings_lib.RatingsError, match=r"muse_annotators.csv: "
                     r"missing column\(s\) \['soft_val_labels'\]"):
    muse.read(str(p))


CREMA_HEADER = ("localid,pos,ans,ttr,queryType,numTries,clipNum,questNum,"
                "subType,clipName,sessionNums,respEmo,respLevel,dispEmo,"
                "dispVal,dispLevel\n")


def _crema_rows(rows):
  return CREMA_HEADER + "".join(
      f"{r},1,{e}_50,1200,{q},1,1,1,4,{c},1,{e},50,A,50,50\n"
      for r, e, q, c in rows)


def test_crema_d_is_categorical_one_hot(tmp_path):
  p = tmp_path / "finishedResponses.csv"
  p.write_text(_crema_rows([("r1", "A", 1, "1001_DFA_ANG_XX"),
                            ("r2", "N", 1, "1001_DFA_ANG_XX"),
                            ("r1", "H", 2, "1001_DFA_ANG_XX"),
                            ("r1", "S", 1, "1002_IEO_SAD_HI")]))
  t = crema_d.read(str(tmp_path))
  assert t.dims == crema_d.DIMS and len(t) == 3  # face-only row not kept
  v, spk = _row(t, "1001_DFA_ANG_XX", "r1")
  np.testing.assert_allclose(v, [1, -1, -1, -1, -1, -1])
  assert spk == "1001"
  assert _row(t, "1002_IEO_SAD_HI", "r1")[0].argmax() == 5
  t_face = crema_d.read(str(p), stimulus="face")
  assert len(t_face) == 1 and t_face.values[0].argmax() == 3
  p.write_text(_crema_rows([("r1", "X", 1, "1001_DFA_ANG_XX")]))
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"finishedResponses.csv:2: respEmo 'X'"):
    crema_d.read(str(p))


def test_reader_registry_joins_embeddings(tmp_path):
  (tmp_path / "Evalution.txt").write_text(MSP_IMPROV_TXT)
  ids = ["MSP-IMPROV-S01A-F01-R-FM01", "MSP-IMPROV-S02B-M02-T-MF05", "x"]
  np.savez(tmp_path / "emb.npz", clip_ids=np.array(ids),
           embeddings=np.eye(3, 4, dtype=np.float32))
  spec = ml_collections.ConfigDict(dict(
      name="improv", reader="msp_improv", path=str(tmp_path),
      embeddings=str(tmp_path / "emb.npz"),
      dims=("activation", "valence", "dominance"), options={}))
  c = readers.load(spec)
  assert list(c.clips) == ids[:2]  # the unrated clip is left out
  assert list(c.speakers) == ["F01", "M02"]
  np.testing.assert_array_equal(c.embeddings, np.eye(3, 4)[:2])
  np.savez(tmp_path / "emb.npz", clip_ids=np.array(ids[1:]),
           embeddings=np.eye(2, 4, dtype=np.float32))
  with pytest.raises(ratings_lib.RatingsError, match="FM01' has no embedding"):
    readers.load(spec)


@pytest.mark.skipif(not os.path.exists(os.path.join(REAL, "crema_d",
                                                    "tabulatedVotes.csv")),
                    reason="no CREMA-D under ../shared/data")
def test_real_crema_d_tabulated_votes():
  clips, counts, major = crema_d.read_tabulated(os.path.join(REAL, "crema_d"))
  assert len(clips) == 7442 and counts.shape == (7442, 6)
  assert len({c[:4] for c in clips}) == 91  # actors = speaker folds
  # The majority column agrees with the counts wherever there is no tie.
  top = counts.max(1, keepdims=True)
  unique_top = (counts == top).sum(1) == 1
  assert unique_top.mean() > 0.8
  got = np.array(crema_d.CODES)[counts.argmax(1)]
  assert (got[unique_top] == major[unique_top]).mean() > 0.99


@pytest.mark.skipif(not os.path.exists(os.path.join(
    REAL, "crema_d", "finishedResponses.csv")),
                    reason="no CREMA-D per-rater responses under ../shared/data")
def test_real_crema_d_responses():
  t = crema_d.read(os.path.join(REAL, "crema_d"))
  assert len(np.unique(t.annotator)) > 1000
  assert len(np.unique(t.speaker)) == 91


def test_reader_keeps_the_configured_dims(tmp_path):
  (tmp_path / "Evalution.txt").write_text(MSP_IMPROV_TXT)
  np.savez(tmp_path / "emb.npz",
           clip_ids=np.array(["MSP-IMPROV-S01A-F01-R-FM01",
                              "MSP-IMPROV-S02B-M02-T-MF05"]),
           embeddings=np.eye(2, 4, dtype=np.float32))
  spec = ml_collections.ConfigDict(dict(
      name="improv", reader="msp_improv", path=str(tmp_path),
      embeddings=str(tmp_path / "emb.npz"), dims=("valence", "activation"),
      options={}))
  c = readers.load(spec)
  assert c.dims == ("valence", "activation")
  v, _ = _row(c.ratings, "MSP-IMPROV-S01A-F01-R-FM01", "mturk_1")
  np.testing.assert_allclose(v, [0.5, 1.0])
  spec.dims = ("activation", "pleasure")
  with pytest.raises(ratings_lib.RatingsError, match="no dimension.*pleasure"):
    readers.load(spec)


def test_missing_value_in_an_unused_dimension_keeps_the_rating(
    tmp_path, caplog):
  """MSP-IMPROV writes `D:NaN`; a run on activation/valence keeps the line,
  a run on dominance drops it, logged as a missing dominance value."""
  (tmp_path / "Evalution.txt").write_text(
      "UTD-IMPROV-S01A-F01-R-FM01.avi; N; A:3.0; V:3.0; D:3.0; N:4.0;\n"
      "mturk_1; Neutral; Neutral; A:2.0; V:4.0; D:NaN; N:4.0;\n"
      "mturk_2; Happy; Happy; A:5.0; V:5.0; D:3.0; N:5.0;\n")
  emb = tmp_path / "emb.npz"
  np.savez(emb, clip_ids=np.array(["MSP-IMPROV-S01A-F01-R-FM01"]),
           embeddings=np.ones((1, 3), np.float32))

  def load(dims):
    return readers.load(ml_collections.ConfigDict(dict(
        name="improv", reader="msp_improv", path=str(tmp_path),
        embeddings=str(emb), dims=dims, options={})))
  av = load(("activation", "valence"))
  assert sorted(av.ratings.annotator) == ["mturk_1", "mturk_2"]
  np.testing.assert_allclose(
      av.ratings.values[av.ratings.annotator == "mturk_1"][0], [0.5, 0.5])
  assert "outside" not in caplog.text
  dom = load(("activation", "dominance"))
  assert list(dom.ratings.annotator) == ["mturk_2"]
  assert "dropped 1 rating(s) with no dominance value" in caplog.text


def _generic(tmp_path, body, scale=(1.0, 7.0)):
  p = tmp_path / "r.csv"
  p.write_text("clip,annotator,speaker,activation,valence\n" + body)
  return generic_csv.read_ratings(str(p), ("activation", "valence"), scale)


def test_generic_csv_reports_the_files_own_value_out_of_scale(tmp_path):
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"r.csv: line 3: valence=9 is outside the scale "
                           r"\[1, 7\]"):
    _generic(tmp_path, "c1,a,s,4,4\nc2,a,s,4,9\n")


def test_generic_csv_rejects_a_row_with_extra_fields(tmp_path):
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"r.csv: line 3: 6 fields, the header has 5"):
    _generic(tmp_path, "c1,a,s,4,4\nc2,a,s,4,4,5\n")


def test_generic_csv_header_only_names_the_file(tmp_path):
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"r.csv: no rating rows \(only a header\)"):
    _generic(tmp_path, "")
