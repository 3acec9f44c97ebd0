"""TFDS builder (array_record, no TensorFlow) and the input pipeline."""

import sys

import jax
import numpy as np
import pytest

from annojax.corpora import corpus as corpus_lib
from annojax.corpora import ratings as ratings_lib
from annojax.data import builder
from annojax.data import pipeline
from annojax.data import prepare


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  """A 6-clip corpus with known ratings, built into a TFDS dataset."""
  rng = np.random.default_rng(0)
  clips = np.array([f"c{i}" for i in range(6)])
  speakers = np.array(["s0", "s0", "s1", "s1", "s2", "s2"])
  emb = rng.normal(size=(6, 4)).astype(np.float32)
  rows = [("c0", "x"), ("c0", "y"), ("c1", "z"), ("c2", "x"), ("c3", "y"),
          ("c3", "z"), ("c3", "x"), ("c4", "x"), ("c5", "y")]
  vals = rng.uniform(-1, 1, size=(len(rows), 2)).astype(np.float32)
  spk = dict(zip(clips, speakers))
  table = ratings_lib.make_ratings([r[0] for r in rows], [r[1] for r in rows],
                                   [spk[r[0]] for r in rows], vals,
                                   ("activation", "valence"))
  corpus = corpus_lib.Corpus("small", clips, speakers, emb, table,
                             {"x": 0, "y": 1, "z": 0})
  index = ratings_lib.AnnotatorIndex.from_ids(table.annotator)
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  path = builder.build(corpus, {"train": np.arange(4),
                                "test": np.arange(4, 6)}, index, data_dir)
  return corpus, index, path


def test_round_trip_without_tensorflow(small):
  corpus, index, path = small
  meta = pipeline.read_meta(path)
  assert meta.annotator_ids == ("x", "y", "z")
  assert meta.dims == ("activation", "valence")
  np.testing.assert_array_equal(meta.annotator_types, [0, 1, 0])
  assert meta.split_sizes == {"train": 4, "test": 2}
  table = pipeline.load_table(path, "train")
  assert sorted(table.clip_ids) == ["c0", "c1", "c2", "c3"]
  # Every stored (clip, annotator, rating) is the corpus's one.
  truth = {(c, a): v for c, a, v in zip(corpus.ratings.clip,
                                        corpus.ratings.annotator,
                                        corpus.ratings.values)}
  got = {(table.clip_ids[c], index.ids[a]): v for c, a, v in zip(
      table.pair_clip, table.pair_annotator, table.pair_values)}
  assert set(got) == {k for k in truth if k[0] in table.clip_ids}
  for k, v in got.items():
    np.testing.assert_array_equal(v, truth[k])
  for i, c in enumerate(table.clip_ids):
    np.testing.assert_array_equal(
        table.embeddings[i], corpus.embeddings[list(corpus.clips).index(c)])
  assert "tensorflow" not in sys.modules


def _kw(meta, layout, k=3):
  return dict(layout=layout, num_annotators=meta.num_annotators,
              num_dims=2, max_raters=k, embedding_dim=meta.embedding_dim)


def test_dense_sparse_and_consensus_layouts_agree(small):
  _, _, path = small
  meta = pipeline.read_meta(path)
  reader = pipeline.SplitReader(path, "train")
  ex = reader.get(range(4))
  dense = pipeline.make_batch(ex, **_kw(meta, "dense"))
  sparse = pipeline.make_batch(ex, **_kw(meta, "sparse"))
  cons = pipeline.make_batch(ex, **_kw(meta, "consensus"))
  assert dense["labels"].shape == (4, 3, 2)
  assert dense["label_mask"].shape == (4, 3)
  assert sparse["labels"].shape == (4, 3, 2)
  assert cons["labels"].shape == (4, 1, 2)
  for i in range(4):
    m = sparse["label_mask"][i] > 0
    ann = sparse["annotators"][i][m]
    np.testing.assert_array_equal(np.flatnonzero(dense["label_mask"][i]),
                                  np.sort(ann))
    np.testing.assert_array_equal(dense["labels"][i, ann],
                                  sparse["labels"][i][m])
    np.testing.assert_allclose(cons["labels"][i, 0],
                               sparse["labels"][i][m].mean(0), rtol=1e-6)
  with pytest.raises(ValueError, match="raters > max_raters=1"):
    pipeline.make_batch(ex, **_kw(meta, "sparse", k=1))


def test_epoch_order_is_seeded_and_hosts_split_global_batches(
    small, monkeypatch):
  _, _, path = small
  meta = pipeline.read_meta(path)
  reader = pipeline.SplitReader(path, "train")
  kw = _kw(meta, "sparse")
  one = [b["embedding"] for b in pipeline.train_batches(reader, 2, 0, 3, **kw)]
  again = [b["embedding"]
           for b in pipeline.train_batches(reader, 2, 0, 3, **kw)]
  np.testing.assert_array_equal(one, again)
  # Epochs differ in order (4 clips: two epochs may coincide, six cannot).
  orders = {np.concatenate([b["embedding"][:, 0] for b in
                            pipeline.train_batches(reader, 2, 0, e, **kw)]
                           ).tobytes() for e in range(6)}
  assert len(orders) > 1
  # Two processes: each reads its half of every global batch.
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  halves = []
  for p in range(2):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    halves.append([b["embedding"] for b in
                   pipeline.train_batches(reader, 2, 0, 3, **kw)])
  for s, full in enumerate(one):
    np.testing.assert_array_equal(
        np.concatenate([halves[0][s], halves[1][s]]), full)


def test_eval_batches_pad_with_masked_examples(small):
  _, _, path = small
  meta = pipeline.read_meta(path)
  reader = pipeline.SplitReader(path, "train")
  out = list(pipeline.eval_batches(reader, 3, **_kw(meta, "dense")))
  assert len(out) == 2
  rows, last = out[1]
  np.testing.assert_array_equal(rows, [3])
  np.testing.assert_array_equal(last["valid"], [1, 0, 0])
  assert last["label_mask"][1:].sum() == 0


def test_speaker_splits_are_disjoint():
  spk = np.repeat(np.array([f"s{i}" for i in range(10)]), 3)
  s = prepare.speaker_splits(spk, {"validation": 0.2, "test": 0.1}, 0)
  sets = {k: set(spk[v]) for k, v in s.items()}
  assert len(sets["validation"]) == 2 and len(sets["test"]) == 1
  assert len(sets["train"]) == 7
  assert sum(len(v) for v in s.values()) == len(spk)
  assert not (sets["train"] & sets["validation"]) and not (
      sets["train"] & sets["test"])


def test_prepare_fingerprints_config(tiny_config, tmp_path):
  a = prepare.prepare(tiny_config, str(tmp_path))
  tiny_config.data.synthetic.seed = 5
  b = prepare.prepare(tiny_config, str(tmp_path))
  assert a.source != b.source  # a changed config never reuses stale data
  meta = pipeline.read_meta(a.source)
  # min_ratings drops rare annotators from pre-training.
  table = pipeline.load_table(a.source, "train")
  counts = np.bincount(table.pair_annotator)
  assert meta.num_annotators <= tiny_config.data.synthetic.source.num_annotators
  assert len(counts) <= meta.num_annotators


def test_auto_layout_switches_by_head_count():
  assert pipeline.choose_layout("auto", 100) == "dense"
  assert pipeline.choose_layout("auto", 2000) == "sparse"
  assert pipeline.choose_layout("sparse", 10) == "sparse"
