"""Every corpus reader on files in its release's exact syntax and layout.

Two sets of such files: the repository's own (tests/fixtures/formats, always
run) and ../shared/formats (each release documented with provenance in its
FORMATS.md; skipped when absent). The real WHiSER labels (../shared/data/
whiser) go through the MSP-Podcast reader.
"""

import os

import numpy as np
import pytest

from annojax.corpora import crema_d
from annojax.corpora import iemocap
from annojax.corpora import msp_improv
from annojax.corpora import msp_podcast
from annojax.corpora import muse
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import readers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "fixtures", "formats")
SHARED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared")
WHISER = os.path.join(SHARED, "data", "whiser")
ROOTS = [
    pytest.param(REPO, id="repo"),
    pytest.param(os.path.join(SHARED, "formats"), id="shared", marks=(
        pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "formats")),
                           reason="no ../shared/formats"))),
]
AV = ("activation", "valence")


def _is_repo(root):
  return root == REPO


def _value(table, clip, annotator):
  i = np.flatnonzero((table.clip == clip) & (table.annotator == annotator))
  assert len(i) == 1, (clip, annotator, i)
  return table.values[i[0]]


def _counts(table):
  return len(table), len(set(table.clip)), len(set(table.annotator))


@pytest.mark.parametrize("root", ROOTS)
def test_msp_podcast_packed_emodetail(root):
  """v1.7-1.12's one packed field: quoted or not, free-text primaries, a
  worker twice on a clip (merged), Split_Set honoured (default Train)."""
  path = os.path.join(root, "msp_podcast")
  table = msp_podcast.read(path, splits="all")
  valid = ratings_lib.validate(readers.select_dims(table, AV))
  merged = "merged: the same annotator rated the clip again (averaged)"
  if _is_repo(root):
    assert _counts(table) == (12, 5, 4)
    assert _counts(valid) == (11, 5, 4)
    # "Other-tired; bored, a bit" as primary: the attributes are read from
    # the anchored tail, A:1 -> -1.
    np.testing.assert_allclose(
        _value(table, "MSP-PODCAST_0153_0021", "WORKER00000103"),
        [-1.0, 0.0, -1 / 3], atol=1e-6)
    assert np.isnan(_value(table, "MSP-PODCAST_0153_0040",
                           "WORKER00000104")[2])  # "D:;" is missing
    # WORKER00000102 rated 0420_0007 twice (A 5 and 6): averaged, counted.
    np.testing.assert_allclose(
        _value(valid, "MSP-PODCAST_0420_0007", "WORKER00000102"),
        [0.5, 2 / 3], atol=1e-6)
    train = msp_podcast.read(path)
    assert len(train) == 9 and set(train.speaker) == {"310", "Unknown"}
    assert train.dropped == {
        "clip in Split_Set Development (options.splits keeps ['Train'])": 2,
        "clip in Split_Set Test1 (options.splits keeps ['Train'])": 1}
  else:
    assert _counts(table) == (19, 5, 7)
    assert _counts(valid) == (18, 5, 7)
    assert len(msp_podcast.read(path)) == 3
  assert valid.dropped == {merged: 1}


@pytest.mark.parametrize("root", ROOTS)
@pytest.mark.parametrize("release", ["msp_podcast_v1.6", "msp_podcast_v2.0"])
def test_msp_podcast_per_field_releases(root, release):
  """v1.6 (`label/`, labels_concensus.csv, `Workers`) and v2.0 (`WorkerID`),
  given the release root: the reader finds the label folder."""
  table = msp_podcast.read(os.path.join(root, release), splits="all")
  if _is_repo(root):
    assert _counts(table) == (4, 3, 3)
    np.testing.assert_allclose(
        _value(table, "MSP-PODCAST_0153_0040", "WORKER00000101"),
        [1.0, -1.0, 2 / 3], atol=1e-6)
  else:
    assert _counts(table) == {"msp_podcast_v1.6": (3, 2, 3),
                              "msp_podcast_v2.0": (6, 5, 5)}[release]


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "formats",
                                                   "msp_podcast_v1.8")),
                    reason="no ../shared/formats")
def test_msp_podcast_v1_8_concensus_spelling_and_split_error():
  path = os.path.join(SHARED, "formats", "msp_podcast_v1.8")
  assert _counts(msp_podcast.read(path, splits="all")) == (9, 2, 6)
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"labels_concensus.csv: no clip in Split_Set "
                     r"\['Train'\]; the file has \['Development'\]"):
    msp_podcast.read(path)


def test_msp_podcast_unparseable_emodetail_names_the_line(tmp_path):
  d = tmp_path / "Labels"
  d.mkdir()
  (d / "labels_consensus.csv").write_text(
      "FileName,SpkrID,Split_Set\nMSP-PODCAST_0001_0001.wav,1,Train\n")
  (d / "labels_detailed.csv").write_text(
      "FileName,EmoDetail\nMSP-PODCAST_0001_0001.wav,"
      "WORKER1; Happy; Happy; A:4; V:4; D:4;\n"
      "MSP-PODCAST_0001_0001.wav,WORKER2; Happy; Happy; A:4; V:4;\n")
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"labels_detailed.csv:3: EmoDetail"):
    msp_podcast.read(str(tmp_path))


@pytest.mark.parametrize("root", ROOTS)
def test_iemocap_self_evaluations_apart_and_comments_unread(root):
  path = os.path.join(root, "iemocap")
  table = iemocap.read(path)
  with_self = iemocap.read(path, self_reports=True)
  reason = "actor's self-evaluation (options.self_reports=True keeps it)"
  selves = sorted({a for a in with_self.annotator if a.startswith("self-")})
  assert not any(a.startswith(("F", "M")) for a in table.annotator)
  if _is_repo(root):
    assert _counts(table) == (4, 2, 2) and table.dropped == {reason: 2}
    assert selves == ["self-F2", "self-M2"]
    # E2's comment "(calm; val 5; not really)" is not a value: val 3.
    np.testing.assert_allclose(_value(table, "Ses02F_impro04_F000", "E2"),
                               [0.0, 0.0, -0.5])
    # E1 left dominance blank: kept for activation/valence only.
    np.testing.assert_allclose(_value(table, "Ses02F_impro04_M000", "E1"),
                               [1.0, -1.0, np.nan])
    assert set(table.speaker) == {"Ses02_F", "Ses02_M"}
  else:
    assert _counts(table) == (14, 6, 4) and table.dropped == {reason: 3}
    assert selves == ["self-F1", "self-M1", "self-M5"]
  assert len(with_self) == len(table) + table.dropped[reason]


@pytest.mark.parametrize("root", ROOTS)
def test_msp_improv_nan_dominance_and_copied_raters(root):
  name = "Evaluation.txt" if _is_repo(root) else "Evalution.txt"
  path = os.path.join(root, "msp_improv")
  assert msp_improv.find(path).endswith(name)
  table = msp_improv.read(path)
  av = ratings_lib.validate(readers.select_dims(table, AV))
  avd = ratings_lib.validate(readers.select_dims(table, msp_improv.DIMS))
  merged = "merged: the same annotator rated the clip again (averaged)"
  if _is_repo(root):
    assert (len(table), len(av), len(avd)) == (5, 4, 2)
    # Questionnaire A:1 (very active) -> activation +1.
    np.testing.assert_allclose(
        _value(av, "MSP-IMPROV-S03A-M01-T-FM02", "eval-p0500"), [1.0, -1.0])
    assert set(av.speaker) == {"M01", "F03"}
  else:
    assert (len(table), len(av), len(avd)) == (13, 12, 9)
  assert av.dropped == {merged: 1}
  assert avd.dropped == {merged: 1, "no dominance value": 3 if not _is_repo(
      root) else 2}


@pytest.mark.parametrize("root", ROOTS)
def test_muse_public_csv_with_the_annotator_list(root):
  path = os.path.join(root, "muse")
  lists = (os.path.join(REPO, "muse", "annotators", "muse_annotators.csv")
           if _is_repo(root) else os.path.join(
               root, "muse", "restricted_metadata_not_in_release",
               "muse_annotators.csv"))
  with pytest.raises(ratings_lib.RatingsError, match="no worker ids"):
    muse.read(path)
  table = muse.read(path, annotators=lists)
  assert table.dims == AV and not table.clip[0].endswith(".wav")
  assert not any(a.startswith("self_report") for a in table.annotator)
  selves = muse.read(lists, self_reports=True)
  assert len(selves) == len(table) + 3
  if _is_repo(root):
    assert _counts(table) == (9, 3, 4)
    np.testing.assert_allclose(
        _value(table, "04_DR-201_0050_1_sentence_1", "A4FIXTUREWRKR4"),
        [0.75, -0.75])
    assert set(table.speaker) == {"03", "04"}
    np.testing.assert_allclose(   # the self-report = S_Activation/Valence
        _value(selves, "03_DR-200_0011_2_sentence_1", "self_report_03"),
        [0.25, -0.5])
  else:
    assert _counts(table) == (24, 3, 9)


def test_muse_annotator_list_must_match_the_public_ratings(tmp_path):
  src = os.path.join(REPO, "muse", "annotators", "muse_annotators.csv")
  text = open(src).read().replace("[3, 7, 5, 6]", "[3, 7, 4, 6]")
  (tmp_path / "list.csv").write_text(text)
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"list.csv:2: the crowd ratings of "
                     r"'03_DR-200_0011_2_sentence_1'"):
    muse.read(os.path.join(REPO, "muse"), annotators=str(tmp_path /
                                                         "list.csv"))


@pytest.mark.parametrize("root", ROOTS)
def test_crema_d_release_layout(root):
  path = os.path.join(root, "crema_d")
  table = crema_d.read(path)  # R row names: an empty first header field
  clips, counts, major = crema_d.read_tabulated(path)  # processedResults/
  if _is_repo(root):
    assert list(table.annotator) == ["0021x", "0021x", "0022y"]
    assert table.dropped == {"stimulus type 3 (keeping 1, voice)": 1}
    assert list(clips) == ["1012_TIE_ANG_HI", "1012_IWL_SAD_XX"]
    assert counts.tolist() == [[7, 1, 0, 0, 2, 0], [0, 0, 2, 0, 4, 4]]
    assert list(major) == ["A", "N:S"]
  else:
    assert len(table) == 5 and len(clips) == 2


@pytest.mark.skipif(not os.path.isfile(os.path.join(WHISER,
                                                    "labels_detailed.csv")),
                    reason="no WHiSER labels under ../shared/data")
def test_real_whiser_labels_through_the_msp_podcast_reader():
  with pytest.raises(ratings_lib.RatingsError, match=r"has \['NA'\]"):
    msp_podcast.read(WHISER)  # Split_Set NA: the default Train is refused
  table = msp_podcast.read(WHISER, splits="all")
  assert _counts(table) == (27156, 5427, 33) and not table.dropped
  assert not np.isnan(table.values).any()
  assert len(ratings_lib.validate(table)) == 27156  # no worker twice
  _, per_worker = np.unique(table.annotator, return_counts=True)
  assert np.median(per_worker) == 818 and per_worker.max() == 2207
  raw = ratings_lib.unscale(table.values, *table.scale)
  np.testing.assert_allclose(raw, np.round(raw), atol=1e-4)  # integers 1-7
  assert raw.min() == 1 and raw.max() == 7
  assert set(table.speaker) == {"Unknown"}
  by_recording = msp_podcast.read(WHISER, splits="all",
                                  unknown_speaker=r"^([^.]+)")
  assert len(set(by_recording.speaker)) == 1089


def test_clip_id_rule_is_shared_by_readers_embeddings_and_features(
    tmp_path):
  from annojax import features  # pylint: disable=g-import-not-at-top
  from annojax.corpora import embeddings  # pylint: disable=g-import-not-at-top
  cases = {"MSP-PODCAST_0001_0008.wav": "MSP-PODCAST_0001_0008",
           " Audio/x/001-105.1-2_14.wav ": "001-105.1-2_14",
           "C:\\data\\1001_DFA_ANG_XX.WAV": "1001_DFA_ANG_XX",
           "clip.wav.npy": "clip", "Ses01F_impro01_F000": "Ses01F_impro01_F000",
           "UTD-IMPROV-S01A.avi": "UTD-IMPROV-S01A"}
  for name, want in cases.items():
    assert ratings_lib.clip_id(name) == want
    assert features._clip_id(name.strip()) == want  # pylint: disable=protected-access
  # Embeddings keyed by file names join the reader's clip ids.
  names = ["MSP-PODCAST_0153_0021.wav", "MSP-PODCAST_0153_0040.wav",
           "MSP-PODCAST_0420_0007.wav", "x/MSP-PODCAST_0777_0012.wav",
           "MSP-PODCAST_0888_0003"]
  np.savez(tmp_path / "e.npz", clip_ids=np.array(names),
           embeddings=np.eye(5, 3, dtype=np.float32))
  ids, _ = embeddings.read_embeddings(str(tmp_path / "e.npz"))
  table = msp_podcast.read(os.path.join(REPO, "msp_podcast"), splits="all")
  assert set(table.clip) == set(ids)
  np.savez(tmp_path / "d.npz", clip_ids=np.array(["a.wav", "a"]),
           embeddings=np.eye(2, 3, dtype=np.float32))
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"several embeddings share the clip id\(s\) \['a'\]"):
    embeddings.read_embeddings(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("target", ["iemocap", "msp_improv", "muse",
                                    "whiser"])
def test_msp_podcast_config_reads_every_target_release(target, tmp_path):
  """configs/msp_podcast.py:<target> declares the reader's options, and the
  configured readers read the release fixtures (labels only, --mode=stats)."""
  from annojax import label_stats  # pylint: disable=g-import-not-at-top
  from configs import msp_podcast as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config(target)
  config.data.files.source.path = os.path.join(REPO, "msp_podcast")
  tgt = config.data.files.target
  tgt.path = os.path.join(REPO, {"whiser": "msp_podcast"}.get(target, target))
  if target == "muse":
    tgt.options.annotators = os.path.join(REPO, "muse", "annotators",
                                          "muse_annotators.csv")
  tables = label_stats.tables(config)
  assert len(tables["msp_podcast"]) == 8  # Split_Set Train only
  assert len(tables[target]) == {"iemocap": 4, "msp_improv": 4, "muse": 9,
                                 "whiser": 11}[target]
