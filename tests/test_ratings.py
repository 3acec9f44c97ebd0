"""Ratings table, validation, annotator index and the generic CSV reader."""

import numpy as np
import pytest

from annojax.corpora import embeddings
from annojax.corpora import generic_csv
from annojax.corpora import ratings as ratings_lib

DIMS = ("activation", "valence")


def _table(values, clips=("c1", "c2", "c3"), anns=("a", "b", "a"),
           spk=("s1", "s1", "s2")):
  return ratings_lib.make_ratings(clips, anns, spk, values, DIMS,
                                  source="t.csv")


def test_nan_rating_names_row_and_annotator():
  t = _table([[0, 0], [0.5, np.nan], [0, 0]])
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"t.csv: row 1: rating 'valence' of annotator "
                     r"'b' on clip 'c2'"):
    ratings_lib.validate(t)


def test_unknown_clip_names_clip():
  t = _table([[0, 0]] * 3)
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"row 2: clip 'c3' has no embedding"):
    ratings_lib.validate(t, known_clips=np.array(["c1", "c2"]))


def test_out_of_range_is_an_error():
  with pytest.raises(ratings_lib.RatingsError, match="outside"):
    ratings_lib.validate(_table([[0, 0], [3.0, 0], [0, 0]]))


def test_clip_with_two_speakers_is_an_error():
  t = _table([[0, 0]] * 3, clips=("c1", "c1", "c2"), anns=("a", "b", "a"),
             spk=("s1", "s2", "s1"))
  with pytest.raises(ratings_lib.RatingsError, match="several speakers"):
    ratings_lib.validate(t)


def test_duplicates_are_averaged_and_counted(caplog):
  t = _table([[0.2, 0.4], [0.0, 0.0], [0.6, -0.4]],
             clips=("c1", "c2", "c1"), anns=("a", "a", "a"),
             spk=("s1", "s1", "s1"))
  out = ratings_lib.validate(t)
  assert len(out) == 2
  np.testing.assert_allclose(out.values[0], [0.4, 0.0], atol=1e-6)
  assert list(out.clip) == ["c1", "c2"]
  assert "1 (clip, annotator) pairs rated more than once" in caplog.text


def test_rescale_and_consensus():
  np.testing.assert_allclose(ratings_lib.rescale([1, 4, 7], 1, 7),
                             [-1, 0, 1])
  t = _table([[1, 0], [0, 0], [0.5, 1]], clips=("c1", "c1", "c2"))
  clips, cons = ratings_lib.consensus(t)
  assert list(clips) == ["c1", "c2"]
  np.testing.assert_allclose(cons, [[0.5, 0], [0.5, 1]])


def test_filter_min_ratings():
  t = _table([[0, 0]] * 3)
  out = ratings_lib.filter_min_ratings(t, 2)
  assert set(out.annotator) == {"a"} and len(out) == 2


def test_annotator_index():
  idx = ratings_lib.AnnotatorIndex.from_ids(["b", "a", "b", "c"])
  assert idx.ids == ("a", "b", "c")
  np.testing.assert_array_equal(idx.lookup(["c", "a"]), [2, 0])
  with pytest.raises(ratings_lib.RatingsError, match="unknown annotator 'z'"):
    idx.lookup(["z"])
  assert ratings_lib.AnnotatorIndex.from_json(idx.to_json()) == idx


def _write(tmp_path, text, emb_ids=("c1", "c2")):
  p = tmp_path / "r.csv"
  p.write_text(text)
  e = tmp_path / "e.npz"
  np.savez(e, clip_ids=np.array(emb_ids),
           embeddings=np.arange(2 * len(emb_ids), dtype=np.float32).reshape(
               len(emb_ids), 2))
  return str(p), str(e)


def test_csv_missing_column(tmp_path):
  p, e = _write(tmp_path, "clip,annotator,activation,valence\nc1,a,1,2\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"r.csv: missing column\(s\) \['speaker'\]"):
    generic_csv.load("x", p, e, DIMS, (1, 7))


def test_csv_not_a_number_names_line(tmp_path):
  p, e = _write(tmp_path, "clip,annotator,speaker,activation,valence\n"
                "c1,a,s,1,2\nc2,a,s,high,2\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"r.csv: line 3: activation='high' is not a number"):
    generic_csv.load("x", p, e, DIMS, (1, 7))


def test_csv_empty_rating_in_a_used_dimension_is_dropped_and_counted(
    tmp_path):
  """As every reader does (README: "one missing a used dimension is
  dropped"); the lines after it keep their own numbers in errors."""
  p, e = _write(tmp_path, "clip,annotator,speaker,activation,valence\n"
                "c1,a,s,1,2\nc2,b,s,,2\nc9,a,s,1,2\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"line 4: clip 'c9' has no embedding"):
    generic_csv.load("x", p, e, DIMS, (1, 7))
  p, e = _write(tmp_path, "clip,annotator,speaker,activation,valence\n"
                "c1,a,s,1,2\nc2,b,s,,2\n")
  c = generic_csv.load("x", p, e, DIMS, (1, 7))
  assert list(c.ratings.annotator) == ["a"]
  assert c.ratings.dropped == {"no activation value": 1}
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"r.csv: no rating has a value in every dimension"):
    p, e = _write(tmp_path, "clip,annotator,speaker,activation,valence\n"
                  "c2,b,s,,2\n")
    generic_csv.load("x", p, e, DIMS, (1, 7))


def test_csv_unknown_clip(tmp_path):
  p, e = _write(tmp_path, "clip,annotator,speaker,activation,valence\n"
                "c1,a,s,1,2\nc9,a,s,1,2\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"line 3: clip 'c9' has no embedding"):
    generic_csv.load("x", p, e, DIMS, (1, 7))


def test_csv_load_rescales_and_joins(tmp_path):
  p, e = _write(tmp_path, "clip,annotator,speaker,activation,valence,extra\n"
                "c2,a,s2,7,1,x\nc1,b,s1,4,4,y\nc2,a,s2,5,3,z\n",
                emb_ids=("c1", "c2", "c3"))
  c = generic_csv.load("x", p, e, DIMS, (1, 7))
  assert list(c.clips) == ["c1", "c2"]  # c3 has no rating: not kept
  assert list(c.speakers) == ["s1", "s2"]
  np.testing.assert_allclose(c.embeddings, [[0, 1], [2, 3]])
  # c2/a rated twice: (7, 1) and (5, 3) -> mean (6, 2) -> rescaled.
  row = list(zip(c.ratings.clip, c.ratings.annotator)).index(("c2", "a"))
  np.testing.assert_allclose(c.ratings.values[row], [2 / 3, -2 / 3],
                             atol=1e-6)


def test_embeddings_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.npz"):
    embeddings.read_embeddings(str(tmp_path / "nope.npz"))
  bad = tmp_path / "bad.npz"
  np.savez(bad, clip_ids=np.array(["a"]), vectors=np.zeros((1, 2)))
  with pytest.raises(ratings_lib.RatingsError, match="no array 'embeddings'"):
    embeddings.read_embeddings(str(bad))
