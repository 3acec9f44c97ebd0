"""A researcher's own corpus: nothing a user did not give is silently assumed.

Each test here failed before its fix (issue: a new user's trial on a real
corpus): the scale and dims of the generic reader, a rating missing a used
dimension, target embeddings of another width.
"""

import logging

import numpy as np
import pytest

from annojax.corpora import ratings as ratings_lib
from annojax.corpora import readers
from annojax.data import prepare
from configs import default


def _write(root, name, rows, dims=("activation", "valence"), width=4,
           seed=0):
  """A generic CSV of `rows` (clip, annotator, speaker, *values) and an
  embeddings file of its clips."""
  root.mkdir(parents=True, exist_ok=True)
  lines = ["clip,annotator,speaker," + ",".join(dims)]
  lines += [",".join(str(v) for v in r) for r in rows]
  (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
  clips = sorted({r[0] for r in rows})
  rng = np.random.default_rng(seed)
  np.savez(root / f"{name}.npz", clip_ids=np.array(clips),
           embeddings=rng.normal(size=(len(clips), width)).astype(np.float32))
  return str(root / f"{name}.csv"), str(root / f"{name}.npz")


def _rows(prefix, values, raters=("a", "b"), speakers=3, clips=4):
  """Every rater rates every clip; ratings cycle through `values`."""
  out, i = [], 0
  for s in range(speakers):
    for c in range(clips):
      for r in raters:
        v = values[i % len(values)]
        out.append((f"{prefix}_s{s}_c{c}", f"{prefix}_{r}", f"{prefix}_s{s}",
                    v, values[(i + 1) % len(values)]))
        i += 1
  return out


def _config(tmp_path, src_values=(1, 2, 3, 4, 5), tgt_values=(1, 3, 5),
            tgt_width=4):
  c = default.get_config()
  c.data.corpus = "files"
  for role, name, values, width in (("source", "src", src_values, 4),
                                    ("target", "tgt", tgt_values, tgt_width)):
    spec = c.data.files[role]
    spec.name = name
    spec.path, spec.embeddings = _write(tmp_path, name, _rows(name, values),
                                        width=width)
  return c


def test_an_undeclared_source_scale_is_read_from_its_ratings(tmp_path,
                                                             caplog):
  """The source's 1-5 ratings with only the target's scale declared: read
  on 1-5 (their own range, with a warning naming it), not on a default
  1-7 (which put every 5 at 0.33 without a word)."""
  c = _config(tmp_path)
  c.data.files.target.scale = (1.0, 5.0)
  with caplog.at_level(logging.WARNING):
    src, tgt = prepare.load_corpora(c.data)
  assert src.ratings.scale == (1.0, 5.0) == tgt.ratings.scale
  np.testing.assert_allclose(src.ratings.values.max(), 1.0)
  np.testing.assert_allclose(src.ratings.values.min(), -1.0)
  assert "src.csv: no scale declared; read from the ratings as [1, 5]" in (
      caplog.text)
  assert "tgt.csv: no scale declared" not in caplog.text


def test_a_declared_scale_wider_than_the_ratings_is_warned(tmp_path, caplog):
  c = _config(tmp_path)
  c.data.files.source.scale = (1.0, 7.0)
  c.data.files.target.scale = (1.0, 5.0)
  with caplog.at_level(logging.WARNING):
    src, _ = prepare.load_corpora(c.data)
  np.testing.assert_allclose(src.ratings.values.max(), 2 * 4 / 6 - 1,
                             rtol=1e-6)
  assert ("src.csv: every rating lies in [1, 5], inside the declared scale "
          "[1, 7]") in caplog.text
  assert "tgt.csv: every rating" not in caplog.text


def test_ratings_that_cannot_show_a_scale_must_declare_one(tmp_path):
  c = _config(tmp_path, src_values=(3,))
  with pytest.raises(ratings_lib.RatingsError,
                     match=r"src.csv: no scale declared, and the ratings "
                           r"cannot show it \(they are all 3\)"):
    prepare.load_corpora(c.data)


def test_dims_set_for_one_corpus_apply_to_both(tmp_path):
  """Overriding data.files.source.dims alone used to leave the target on
  the default dims ("missing column(s) ['activation']")."""
  c = _config(tmp_path)
  dims = ("arousal", "pleasure")
  for role, name, values in (("source", "src", (1, 2, 3, 4, 5)),
                             ("target", "tgt", (1, 3, 5))):
    spec = c.data.files[role]
    spec.path, spec.embeddings = _write(tmp_path / "renamed", name,
                                        _rows(name, values), dims=dims)
  c.data.files.source.dims = dims
  specs = readers.resolved(c.data.files)
  assert specs["target"].dims == dims == specs["source"].dims
  assert c.data.files.target.dims == ()  # the config itself is not changed
  src, tgt = prepare.load_corpora(c.data)
  assert src.ratings.dims == dims == tgt.ratings.dims
  # Each corpus's own dims win; files.dims is the shared default.
  c.data.files.source.dims = ("activation",)
  c.data.files.target.dims = ("valence",)
  specs = readers.resolved(c.data.files)
  assert (specs["source"].dims, specs["target"].dims) == (("activation",),
                                                          ("valence",))
  c.data.files.source.dims = c.data.files.target.dims = ()
  c.data.files.dims = ("valence",)
  assert readers.resolved(c.data.files)["target"].dims == ("valence",)


def test_a_rating_missing_a_used_dimension_is_dropped_and_counted(
    tmp_path, caplog):
  """As README says for every reader: the generic reader used to refuse
  the file instead (the row's NaN named by validate)."""
  c = _config(tmp_path)
  path = c.data.files.source.path
  with open(path) as f:
    lines = f.read().splitlines()
  lines[3] = ",".join(lines[3].split(",")[:4] + [""])  # no valence
  lines[5] = ",".join(lines[5].split(",")[:3] + ["", "2"])  # no activation
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  c.data.files.source.scale = c.data.files.target.scale = (1.0, 5.0)
  with caplog.at_level(logging.WARNING):
    src, _ = prepare.load_corpora(c.data)
  assert len(src.ratings) == len(lines) - 1 - 2
  assert src.ratings.dropped == {"no valence value": 1,
                                 "no activation value": 1}
  assert "dropped 1 rating(s) with no valence value (lines [4])" in caplog.text
  assert "dropped 1 rating(s) with no activation value (lines [6])" in (
      caplog.text)


def test_target_embeddings_of_another_width_name_both_files(tmp_path):
  """Used to end in numpy's "operands could not be broadcast together"."""
  c = _config(tmp_path, tgt_width=7)
  c.data.files.source.scale = c.data.files.target.scale = (1.0, 5.0)
  c.data.min_ratings = 2
  with pytest.raises(ValueError,
                     match=r"tgt.npz: embeddings of 7 features, but the "
                           r"source's \(.*src.npz\) have 4"):
    prepare.prepare(c, str(tmp_path / "w"))


@pytest.mark.slow
def test_distribution_rows_a_target_cannot_score_are_left_out_not_fatal(
    tiny_config, tmp_path):
  """A corpus with fewer ratings per target clip than
  config.eval.distribution.min_ratings used to train every model and then
  end the protocol with an error. By default those rows are left out with
  a line saying why; named in config.eval.rows they fail before training."""
  from annojax import jobs  # pylint: disable=g-import-not-at-top
  from annojax.protocol import context  # pylint: disable=g-import-not-at-top
  from annojax.protocol import loop  # pylint: disable=g-import-not-at-top
  from annojax.protocol import rows  # pylint: disable=g-import-not-at-top
  c = tiny_config
  prepared = prepare.prepare(c, str(tmp_path / "w"))
  target = context.Target(c, prepared)
  most = int(np.bincount(target.table.pair_clip).max())
  c.eval.distribution.min_ratings = most + 1
  selected, why = loop.selected_rows(c, target)
  assert selected and all(r.output == rows.PAIRS for r in selected)
  assert why.startswith("rows left out: ")
  assert "heads_kde" in why and "aggregate_sd" in why
  assert f"no target clip has >= {most + 1} ratings (the most any has: " \
         f"{most})" in why
  c.eval.distribution.min_ratings = most
  selected, why = loop.selected_rows(c, target)
  assert why is None and "heads_kde" in [r.name for r in selected]
  c.eval.distribution.min_ratings = most + 1
  c.eval.rows = ("heads_kde",)
  c.mode = "all"
  with pytest.raises(ValueError, match=r"rating distributions: no target "
                                       r"clip has >= \d+ ratings"):
    jobs.run(c, str(tmp_path / "w"))
  assert not (tmp_path / "w" / "individual").exists()  # nothing trained


def _cli(*args):
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return subprocess.run([sys.executable, "-m", "annojax.main", *args],
                        cwd=root, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_later_modes_start_from_the_workdirs_saved_config(tmp_path):
  """A later mode without --config used to need every flag again (or
  rebuilt the synthetic default over the saved config.json). Now: no
  --config starts from the saved config, flags apply on top (logged); a
  --config whose data settings differ is refused naming the keys; the
  saved config.json is never written over."""
  import json  # pylint: disable=g-import-not-at-top
  w = tmp_path / "w"
  r = _cli("--config=configs/tiny.py", f"--workdir={w}", "--mode=prepare",
           "--config.data.min_ratings=5", "--config.eval.seeds=3")
  assert r.returncode == 0, r.stderr[-2000:]
  saved = (w / "config.json").read_text()
  assert json.loads(saved)["data"]["min_ratings"] == 5
  r = _cli(f"--workdir={w}", "--mode=prepare", "--config.eval.seeds=2")
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"no --config given: starting from {w / 'config.json'}" in r.stderr
  assert "reusing the prepared datasets" in r.stderr  # the same data
  assert "eval.seeds: 3 -> 2" in r.stderr
  later = json.loads((w / "config.prepare.json").read_text())
  assert later["data"]["min_ratings"] == 5 and later["eval"]["seeds"] == 2
  assert later["data"]["synthetic"] == json.loads(saved)["data"]["synthetic"]
  r = _cli("--config=configs/tiny.py", f"--workdir={w}", "--mode=prepare")
  assert r.returncode == 1
  assert ("has other data / model settings than this run: "
          "data.min_ratings: 5 -> ") in r.stderr.splitlines()[-2]
  # A flag on top of the saved config is held to it too (in process).
  from annojax import workdir_config  # pylint: disable=g-import-not-at-top
  c = workdir_config.get_config(str(w / "config.json"))
  c.model.hidden = 7
  with pytest.raises(ValueError, match=r"model.hidden: \d+ -> 7"):
    workdir_config.reconcile(c, str(w))
  c.model.hidden = json.loads(saved)["model"]["hidden"]
  c.data.cache = not c.data.cache  # how data is read, not what it holds
  workdir_config.reconcile(c, str(w), write=False)
  assert (w / "config.json").read_text() == saved
  assert not (w / "data" / "prepared").is_dir() or len(
      list((w / "data" / "prepared").iterdir())) == 1  # nothing rebuilt


@pytest.mark.slow
def test_print_config_is_plain_yaml(tmp_path):
  """--print_config showed !!python/tuple tags and &id001 anchors (one
  tuple object shared by source and target dims)."""
  import yaml  # pylint: disable=g-import-not-at-top
  r = _cli("--config=configs/default.py", "--print_config",
           "--config.data.files.source.dims=('a','b')")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "!!" not in r.stdout and "&id" not in r.stdout
  c = yaml.safe_load(r.stdout)
  assert c["data"]["files"]["source"]["dims"] == ["a", "b"]
  assert c["data"]["files"]["target"]["dims"] == []
  assert c["eval"]["enroll_sizes"] == [2, 5, 10, 15, 20, 25, 30, 0]


def test_distribution_plots_are_on_the_corpus_scale():
  """The example distributions were drawn on [-1, 1]; now on the corpus's
  own scale (a 1-7 Likert: levels 1..7, an s.d. of .5 on [-1, 1] is 1.5)."""
  from annojax import plots  # pylint: disable=g-import-not-at-top
  levels = np.linspace(-1, 1, 7)
  edges = np.concatenate([[-1.0], (levels[1:] + levels[:-1]) / 2, [1.0]])
  data = {"edges": edges, "levels": levels, "scale": (1.0, 7.0)}
  x, width, half = plots.on_rating_scale(data)
  np.testing.assert_allclose(x, np.arange(1, 8), atol=1e-12)
  assert half == 3.0 and width == pytest.approx(0.4 * (1 / 6) * 3)
  cont = {"edges": np.linspace(-1, 1, 11), "levels": None,
          "scale": (0.0, 100.0)}
  x, width, half = plots.on_rating_scale(cont)
  np.testing.assert_allclose(x, np.arange(5, 100, 10), atol=1e-9)
  assert width == pytest.approx(8.0) and half == 50.0
  x, _, half = plots.on_rating_scale({**cont, "scale": None})
  np.testing.assert_allclose(x, np.linspace(-0.9, 0.9, 10), atol=1e-12)


def test_a_lab_can_adopt_it_license_and_citation():
  """No LICENSE and no CITATION.cff: no lab could adopt it."""
  import os  # pylint: disable=g-import-not-at-top
  import yaml  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "LICENSE")) as f:
    text = f.read()
  assert text.lstrip().startswith("Apache License")
  assert "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text
  with open(os.path.join(root, "CITATION.cff")) as f:
    cff = yaml.safe_load(f)
  assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
  paper = cff["preferred-citation"]
  assert paper["title"] == ("More Similar than Dissimilar: Modeling "
                            "Annotators for Cross-Corpus Speech Emotion "
                            "Recognition")
  assert [a["family-names"] for a in paper["authors"]] == [
      "Tavernor", "Mower Provost"]
  assert "2509.12295" in paper["url"]
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  assert "Apache License 2.0 (`LICENSE`)" in readme
  assert "`CITATION.cff`" in readme and "arXiv:2509.12295" in readme
