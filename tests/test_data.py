"""TFDS builder (array_record, no TensorFlow) and the input pipeline."""

import os
import shutil
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
  ex = reader.take(range(4))
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
      sets["train"] & sets["test"]) and not (
          sets["validation"] & sets["test"])


def test_prepare_fingerprints_config(tiny_config, tmp_path, monkeypatch):
  a = prepare.prepare(tiny_config, str(tmp_path))
  tiny_config.data.synthetic.seed = 5
  b = prepare.prepare(tiny_config, str(tmp_path))
  assert a.source != b.source  # a changed config never reuses stale data
  # Nor does a changed generator under the same config.
  from annojax.corpora import synthetic  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(synthetic, "VERSION", synthetic.VERSION + "-next")
  c = prepare.prepare(tiny_config, str(tmp_path))
  assert c.source != b.source
  # How a dataset is read (layout, cache, shuffle window) is not its content.
  d = tiny_config.data
  before = prepare.fingerprint(d)
  d.layout, d.cache, d.shuffle_window = "sparse", not d.cache, 8
  assert prepare.fingerprint(d) == before
  d.min_ratings += 1
  assert prepare.fingerprint(d) != before


def test_prepare_keeps_exactly_the_annotators_with_min_ratings(tiny_config,
                                                              tmp_path):
  """min_ratings = 40 on the tiny population: the heads are exactly the
  annotators with >= 40 source ratings (counted in the generated table),
  each keeps all its ratings, and the dropped rows are in the metadata."""
  from annojax.corpora import synthetic  # pylint: disable=g-import-not-at-top
  tiny_config.data.min_ratings = 40
  p = prepare.prepare(tiny_config, str(tmp_path))
  source, _ = synthetic.make_pair(tiny_config.data.synthetic)
  ids, counts = np.unique(source.ratings.annotator, return_counts=True)
  meta = pipeline.read_meta(p.source)
  assert 0 < (counts < 40).sum() < len(ids)  # the filter has work to do
  assert list(meta.annotator_ids) == sorted(ids[counts >= 40])
  kept = np.zeros(meta.num_annotators, int)
  speakers = {}
  for split in ("train", "validation", "test"):
    t = pipeline.load_table(p.source, split)
    kept += np.bincount(t.pair_annotator, minlength=meta.num_annotators)
    speakers[split] = set(t.speakers)
  np.testing.assert_array_equal(kept, counts[counts >= 40])
  assert meta.dropped == {
      "annotator has < 40 ratings: no head (still in the consensus)":
          int(counts[counts < 40].sum())}
  # The prepared splits share no speaker, validation and test included.
  assert not speakers["train"] & speakers["validation"]
  assert not speakers["train"] & speakers["test"]
  assert not speakers["validation"] & speakers["test"]


def test_auto_layout_switches_by_head_count():
  assert pipeline.choose_layout("auto", 100) == "dense"
  assert pipeline.choose_layout("auto", 2000) == "sparse"
  assert pipeline.choose_layout("sparse", 10) == "sparse"


def _write_generic(root, emb_scale=1.0, emb_offset=0.0, seed=0):
  """Source + target generic CSV corpora with embeddings (.npz): 8 source
  speakers x 5 clips rated by annotators a0-a3 (and a rare one, r, with a
  single rating), 4 target speakers x 5 clips rated by t0-t1."""
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  for name, n_spk, anns in (("src", 8, ["a0", "a1", "a2", "a3"]),
                            ("tgt", 4, ["t0", "t1"])):
    lines = ["clip,annotator,speaker,activation,valence"]
    ids = []
    for s in range(n_spk):
      for c in range(5):
        clip = f"{name}_s{s}_c{c}"
        ids.append(clip)
        for a in anns:
          lines.append(f"{clip},{a},{name}_s{s},{rng.integers(1, 8)},"
                       f"{rng.integers(1, 8)}")
    if name == "src":
      lines.append(f"{ids[0]},r,{name}_s0,7,7")
    (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
    emb = rng.normal(size=(len(ids), 5)) * emb_scale + emb_offset
    np.savez(root / f"{name}.npz", clip_ids=np.array(ids),
             embeddings=emb.astype(np.float32))
  return root


def _files_config(config, root):
  config.data.corpus = "files"
  for role, name in (("source", "src"), ("target", "tgt")):
    spec = config.data.files[role]
    spec.name, spec.reader = name, "generic"
    spec.path, spec.embeddings = str(root / f"{name}.csv"), str(
        root / f"{name}.npz")
    spec.scale = (1.0, 7.0)
  config.data.min_ratings = 2
  return config


def test_standardised_features_are_clipped_at_feature_clip(tiny_config,
                                                          tmp_path):
  """A target clip with a feature far outside the pre-training speakers'
  range (NSC eGeMAPS: 486 s.d.) is stored at +-config.data.feature_clip;
  every other value is as without the limit; 0 turns it off."""
  root = _write_generic(tmp_path / "in")
  with np.load(root / "tgt.npz") as f:
    arrays = dict(f)
  arrays["embeddings"][3, 2] = 1e4  # clip tgt_s0_c3
  np.savez(root / "tgt.npz", **arrays)
  c = _files_config(tiny_config, root)
  assert c.data.feature_clip == 5.0
  clipped = prepare.prepare(c, str(tmp_path / "w"))
  assert pipeline.read_meta(clipped.target).feature_clip == 5.0
  c.data.feature_clip = 0
  free = prepare.prepare(c, str(tmp_path / "w"))
  assert pipeline.read_meta(free.target).feature_clip is None
  a = pipeline.load_table(clipped.target, "full")
  b = pipeline.load_table(free.target, "full")
  i = list(a.clip_ids).index("tgt_s0_c3")
  assert a.embeddings[i, 2] == 5.0 and b.embeddings[i, 2] > 1000
  rest = np.ones(a.embeddings.shape, bool)
  rest[i, 2] = False
  assert np.abs(b.embeddings[rest]).max() < 5
  np.testing.assert_array_equal(a.embeddings[rest], b.embeddings[rest])
  c.data.feature_clip = -1.0
  with pytest.raises(ValueError, match="feature_clip"):
    prepare.prepare(c, str(tmp_path / "w"))


def test_fingerprint_covers_the_input_files_content(tiny_config, tmp_path):
  root = _write_generic(tmp_path / "in")
  c = _files_config(tiny_config, root)
  a = prepare.prepare(c, str(tmp_path / "w"))
  text = (root / "src.csv").read_text().splitlines()
  first = text[1].split(",")
  first[3] = "1" if first[3] != "1" else "2"  # edit one rating in place
  text[1] = ",".join(first)
  (root / "src.csv").write_text("\n".join(text) + "\n")
  b = prepare.prepare(c, str(tmp_path / "w"))
  assert a.source != b.source  # same config, same path, new content
  got = pipeline.load_table(b.source, "train")
  clip = first[0]
  if clip in got.clip_ids:  # the edited rating is what the dataset holds
    i = list(got.clip_ids).index(clip)
    ann = pipeline.read_meta(b.source).annotator_ids.index(first[1])
    rows = (got.pair_clip == i) & (got.pair_annotator == ann)
    np.testing.assert_allclose(got.pair_values[rows][0, 0],
                               ratings_lib.rescale(float(first[3]), 1, 7))


def test_consensus_counts_every_rating(tiny_config, tmp_path):
  """min_ratings keeps annotator r (1 rating) out of the heads, but not out
  of the clip's consensus: the aggregate's target and CCC_con's label."""
  root = _write_generic(tmp_path / "in")
  c = _files_config(tiny_config, root)
  p = prepare.prepare(c, str(tmp_path / "w"))
  meta = pipeline.read_meta(p.source)
  assert "r" not in meta.annotator_ids
  lines = (root / "src.csv").read_text().splitlines()[1:]
  rows = [l.split(",") for l in lines if l.startswith("src_s0_c0,")]
  want = ratings_lib.rescale(
      np.array([[float(r[3]), float(r[4])] for r in rows]), 1, 7).mean(0)
  assert len(rows) == 5  # a0-a3 and r
  for split in ("train", "validation", "test"):
    t = pipeline.load_table(p.source, split)
    if "src_s0_c0" in t.clip_ids:
      i = list(t.clip_ids).index("src_s0_c0")
      np.testing.assert_allclose(t.consensus[i], want, rtol=1e-6)
      heads_mean = t.pair_values[t.pair_clip == i].mean(0)
      assert not np.allclose(heads_mean, want)
      reader = pipeline.SplitReader(p.source, split)
      batch = pipeline.make_batch(
          reader.take([i]), layout="consensus", num_annotators=4, num_dims=2,
          max_raters=5, embedding_dim=5)
      np.testing.assert_allclose(batch["labels"][0, 0], want, rtol=1e-6)


def test_features_are_standardised_with_source_training_statistics(
    tiny_config, tmp_path):
  """Features on wild scales (openSMILE-like: offsets ~40, s.d. ~100) are
  stored as (x - mean) / s.d. of the source training split, so the model
  sees the same inputs whatever the feature scale."""
  a_root = _write_generic(tmp_path / "a")
  b_root = _write_generic(tmp_path / "b", emb_scale=100.0, emb_offset=40.0)
  a = prepare.prepare(_files_config(tiny_config, a_root), str(tmp_path / "wa"))
  b = prepare.prepare(_files_config(tiny_config, b_root), str(tmp_path / "wb"))
  train = pipeline.load_table(b.source, "train").embeddings
  np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(train.std(0), 1.0, rtol=1e-4)
  meta = pipeline.read_meta(b.source)
  assert meta.feature_mean is not None and np.all(meta.feature_std > 10)
  # The target goes through the SOURCE statistics (not its own).
  assert np.array_equal(pipeline.read_meta(b.target).feature_mean,
                        meta.feature_mean)
  for path_a, path_b, split in ((a.source, b.source, "train"),
                                (a.target, b.target, "full")):
    np.testing.assert_allclose(
        pipeline.load_table(path_a, split).embeddings,
        pipeline.load_table(path_b, split).embeddings, atol=2e-3)
  tiny_config.data.standardize = False
  raw = prepare.prepare(tiny_config, str(tmp_path / "wb"))
  assert pipeline.load_table(raw.source, "train").embeddings.std() > 50


def test_overlap_with_pretraining_is_refused_and_counted():
  def table(clips, anns, spk):
    return ratings_lib.make_ratings(clips, anns, spk, np.zeros((len(clips), 1)),
                                    ("a",), source="x")
  src = table(["c1", "c2"], ["a1", "a2"], ["s1", "s2"])
  clean = table(["d1"], ["b1"], ["t1"])
  assert prepare.overlap(src, clean) == {
      "clips": 0, "speakers": 0, "annotators": 0, "allowed": []}
  leaky = table(["d1", "c2"], ["a1", "b1"], ["t1", "s2"])
  with pytest.raises(prepare.LeakageError,
                     match=r"shares 1 clips \(e.g. \['c2'\]\); 1 speakers "
                           r"\(e.g. \['s2'\]\); 1 annotators"):
    prepare.overlap(src, leaky)
  with pytest.raises(prepare.LeakageError, match="1 clips"):
    prepare.overlap(src, leaky, allow=("speakers", "annotators"))
  assert prepare.overlap(src, leaky, allow=prepare.OVERLAP_KINDS) == {
      "clips": 1, "speakers": 1, "annotators": 1,
      "allowed": ["annotators", "clips", "speakers"]}


def test_empty_target_path_is_an_error_not_a_silent_reuse(tiny_config,
                                                          tmp_path):
  c = _files_config(tiny_config, _write_generic(tmp_path / "in"))
  c.data.files.target.path = ""
  with pytest.raises(ValueError, match=r"files.target.path is empty"):
    prepare.prepare(c, str(tmp_path / "w"))


def test_dropped_and_merged_rows_are_counted_in_the_dataset_metadata(
    tiny_config, tmp_path):
  """Nothing is lost silently: the prepared dataset says how many rating rows
  were merged (a repeated rating) or dropped (annotator r below
  min_ratings), by reason; the target, which lost nothing, says so."""
  root = _write_generic(tmp_path / "in")
  with open(root / "src.csv", "a") as f:
    f.write("src_s0_c0,a0,src_s0,3,3\n")  # a0 rates src_s0_c0 again
  p = prepare.prepare(_files_config(tiny_config, root), str(tmp_path / "w"))
  assert pipeline.read_meta(p.source).dropped == {
      "merged: the same annotator rated the clip again (averaged)": 1,
      "annotator has < 2 ratings: no head (still in the consensus)": 1}
  assert pipeline.read_meta(p.target).dropped == {}


def test_prepare_again_reuses_the_datasets_without_reading(tiny_config,
                                                           tmp_path,
                                                           monkeypatch):
  """train / export after prepare find the datasets by fingerprint and do
  not read the corpora again; a missing dataset is rebuilt."""
  a = prepare.prepare(tiny_config, str(tmp_path))
  real = prepare.load_corpora

  def no_read(cfg):
    raise AssertionError("corpora read again")
  monkeypatch.setattr(prepare, "load_corpora", no_read)
  b = prepare.prepare(tiny_config, str(tmp_path))
  assert b == a and b.overlap == a.overlap
  shutil.rmtree(a.target)
  calls = []
  monkeypatch.setattr(prepare, "load_corpora",
                      lambda cfg: calls.append(1) or real(cfg))
  c = prepare.prepare(tiny_config, str(tmp_path))
  assert calls == [1] and c == a
  assert os.path.exists(os.path.join(c.target, "dataset_info.json"))


@pytest.fixture
def blocky(tmp_path, monkeypatch):
  """30 clips in records of 4 (7 full records and one of 2), 1-3 ratings
  per clip."""
  monkeypatch.setattr(builder, "CLIPS_PER_RECORD", 4)
  rng = np.random.default_rng(1)
  clips = np.array([f"c{i:02d}" for i in range(30)])
  speakers = np.array([f"s{i % 5}" for i in range(30)])
  rows = [(c, a) for i, c in enumerate(clips)
          for a in rng.choice(["x", "y", "z"], i % 3 + 1, replace=False)]
  table = ratings_lib.make_ratings(
      [r[0] for r in rows], [r[1] for r in rows],
      [speakers[int(r[0][1:])] for r in rows],
      rng.uniform(-1, 1, (len(rows), 2)).astype(np.float32),
      ("activation", "valence"))
  corpus = corpus_lib.Corpus("blocky", clips, speakers,
                             rng.normal(size=(30, 3)).astype(np.float32),
                             table, None)
  index = ratings_lib.AnnotatorIndex.from_ids(table.annotator)
  path = builder.build(corpus, {"train": np.arange(30)}, index,
                       str(tmp_path))
  return corpus, path


def test_records_hold_blocks_and_every_read_path_agrees(blocky):
  corpus, path = blocky
  cold = pipeline.SplitReader(path, "train", cache=False)
  warm = pipeline.SplitReader(path, "train", cache=True)
  assert (len(cold), cold.block, cold.num_blocks) == (30, 4, 8)
  assert pipeline.max_raters(path, "train") == 3
  everything = warm.all()
  assert sorted(everything.clip_ids) == list(corpus.clips)
  # Each clip's embedding and ratings are the corpus's, whichever path.
  rows = np.random.default_rng(0).choice(30, 12, replace=True)
  for got in (cold.take(rows), warm.take(rows), everything.take(rows)):
    for i, c in enumerate(got.clip_ids):
      np.testing.assert_array_equal(
          got.embeddings[i], corpus.embeddings[list(corpus.clips).index(c)])
      lo, hi = got.offsets[i], got.offsets[i + 1]
      want = corpus.ratings.clip == c
      assert hi - lo == want.sum()
      np.testing.assert_array_equal(
          np.sort(got.ratings[lo:hi], axis=0),
          np.sort(corpus.ratings.values[want], axis=0))
    np.testing.assert_array_equal(got.clip_ids, everything.clip_ids[rows])


def test_windows_cover_each_clip_once_and_cache_changes_nothing(blocky):
  _, path = blocky
  meta = pipeline.read_meta(path)
  kw = dict(layout="sparse", num_annotators=meta.num_annotators,
            num_dims=2, max_raters=3, embedding_dim=3)
  readers = {c: pipeline.SplitReader(path, "train", cache=c)
             for c in (False, True)}
  for window in (4, 8, 1 << 16):
    order = pipeline.epoch_order(readers[True], 0, 2, window)
    flat = np.concatenate(order)
    np.testing.assert_array_equal(np.sort(flat), np.arange(30))
    # A window is window // 4 whole records (of 4 clips; record 7 of 2).
    for i, w in enumerate(order):
      recs = np.unique(w // 4)
      assert len(w) == sum(2 if r == 7 else 4 for r in recs)
      assert len(recs) == min(window // 4, 8) or i == len(order) - 1
    batches = {c: list(pipeline.train_batches(r, 5, 0, 2, window, **kw))
               for c, r in readers.items()}
    assert len(batches[False]) == 6  # 30 // 5
    # Batches are the order's clips, 5 by 5, across window boundaries.
    emb = readers[True].all().embeddings
    np.testing.assert_array_equal(
        np.concatenate([b["embedding"] for b in batches[False]]), emb[flat])
    for a, b in zip(batches[False], batches[True]):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
  # One window holding the whole split: a permutation of all 30 clips
  # (batches mix records), different per epoch.
  one = pipeline.epoch_order(readers[True], 0, 0)
  assert len(one) == 1
  assert len(set(one[0][:4] // 4)) > 1
  assert not np.array_equal(one[0], pipeline.epoch_order(readers[True], 0,
                                                         1)[0])


def test_uncached_epoch_reads_each_record_once(blocky, monkeypatch):
  _, path = blocky
  reader = pipeline.SplitReader(path, "train", cache=False)
  reads = []
  source = reader._source  # pylint: disable=protected-access
  get = source.__getitems__
  monkeypatch.setattr(source, "__getitems__",
                      lambda keys: reads.extend(keys) or get(keys))
  kw = dict(layout="dense", num_annotators=3, num_dims=2, max_raters=3,
            embedding_dim=3)
  for window in (4, 12):
    reads.clear()
    n = sum(1 for _ in pipeline.train_batches(reader, 4, 0, 0, window, **kw))
    assert n == 7
    assert sorted(reads) == list(range(8))
