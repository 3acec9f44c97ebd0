"""`--mode=enroll` and `--mode=predict`: work from an exported bundle alone.

enroll: new annotators' enrollment ratings (long CSV: clip, annotator, one
  column per dimension of the bundle, speaker optional; several files
  separated by commas) + embeddings of those clips -> <workdir>/enroll/
  mapping.json and mapping.csv: per annotator the selected head(s), weights,
  scores, the score margin and clip count. The rule (config.predict.rule):
  "blended" (default; blend.py) predicts with the consensus model moved
  toward the individual rules by the evidence (its heads in
  blended_heads.npz, the consensus part and from_consensus, how far it
  moved, in the mapping); "top_k" copies the selected heads; "fit" (bundles
  of an embedding family, models.py) fits a new embedding to each
  annotator's ratings (rater_embeddings.py; fitted_embeddings.npz beside
  the mapping). With config.predict.pool (clip
  embeddings of candidate clips), also suggestions.csv: the next
  config.predict.propose clips each annotator should rate (adaptive
  enrollment, annojax/adaptive.py), in the ratings CSV's layout, so a
  listening test can run in rounds: rate, pass the file back, enroll again.
predict: a mapping + embeddings of new clips -> <workdir>/predict/
  predictions.csv: one row per (clip, annotator) with each dimension in
  [-1, 1] and, as `<dim>_scaled`, on config.predict.scale (the scale the
  enrollment ratings were given on). A head's linear output can leave the
  scale (7.006 on 1-7); with config.predict.clip (default) both columns are
  clipped to the scale, as no rating can lie outside it, and the number of
  clipped values is logged; clip=False writes the raw outputs.
Categorical bundles (e.g. CREMA-D): the enrollment CSV has columns clip,
  annotator, label (a class name of the bundle), scored by
  config.predict.score = loglik or agreement; predictions are the class
  probabilities of each annotator's head and the top class.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

from absl import logging
import numpy as np

from annojax import adaptive
from annojax import blend
from annojax import distributions
from annojax import enroll as enroll_lib
from annojax import export
from annojax import metrics
from annojax import posterior
from annojax import rater_embeddings
from annojax.corpora import embeddings
from annojax.corpora import generic_csv
from annojax.corpora import ratings as ratings_lib
from annojax.corpora import rows as rows_lib

RULES = ("blended", "top_k", "fit")
BLENDED_HEADS = "blended_heads.npz"
FITTED = "fitted_embeddings.npz"  # the fit rule's embeddings


def _bundle_path(config, workdir):
  return config.predict.bundle or os.path.join(workdir, "export")


def _embeddings(path: str, bundle) -> tuple[np.ndarray, np.ndarray]:
  """(clip ids, embeddings) of a file, checked against the bundle's model
  (the error names the file)."""
  if not path:
    raise ValueError("set --config.predict.embeddings to a .npz/.npy file of "
                     "clip embeddings")
  ids, emb = embeddings.read_embeddings(path)
  want = bundle.info["embedding_dim"]
  if emb.ndim != 2 or emb.shape[1] != want:
    raise ValueError(
        f"{path}: embeddings of shape {emb.shape}, but the bundle's model "
        f"takes {want}-d embeddings (as its training corpus, "
        f"{bundle.info['features'].get('corpus', '?')}, had); extract them "
        "the same way")
  return ids, emb


def read_labels(path: str, classes) -> ratings_lib.Ratings:
  """Categorical enrollment CSV: clip, annotator, label (one of `classes`)
  -> one-hot rows on [-1, 1], as the categorical readers produce; a blank
  label gives a row of NaN (a blank row, see _without_blank_rows)."""
  with open(path, newline="") as f:
    r = csv.DictReader(f)
    rows_lib.require_columns(r.fieldnames, ["clip", "annotator", "label"],
                             path)
    clip, ann, values = [], [], []
    for line, row in enumerate(r, start=2):
      label = (row["label"] or "").strip()
      if label and label not in classes:
        raise ratings_lib.RatingsError(
            f"{path}: line {line}: label {label!r} is not one of {classes}")
      clip.append(row["clip"].strip())
      ann.append(row["annotator"].strip())
      values.append(  # blank: a suggested clip left unrated
          np.where(np.arange(len(classes)) == classes.index(label), 1.0, -1.0)
          if label else np.full(len(classes), np.nan))
  return ratings_lib.make_ratings(clip, ann, [""] * len(clip), values,
                                  classes, source=path)


def declared_scale(p, bundle, mapping: dict | None = None
                   ) -> tuple[tuple[float, float], str]:
  """The (low, high) scale ratings are read on and predictions written on,
  and where it comes from: config.predict.scale where set, else the
  mapping's (predict: the scale enroll used), else the bundle's source
  corpus scale. No silent default: a bundle that records none needs
  config.predict.scale."""
  if len(p.scale):
    if len(p.scale) != 2 or not float(p.scale[0]) < float(p.scale[1]):
      raise ValueError(f"config.predict.scale={tuple(p.scale)}: give "
                       "(low, high) with low < high, e.g. '(1,5)'")
    scale, source = (float(p.scale[0]), float(p.scale[1])), \
        "config.predict.scale"
    if mapping and mapping.get("scale") and tuple(mapping["scale"]) != scale:
      logging.warning("config.predict.scale %s differs from the scale %s "
                      "the enrollment ratings were read on (mapping); "
                      "predictions are written on %s", scale,
                      tuple(mapping["scale"]), scale)
    return scale, source
  if mapping and mapping.get("scale"):
    return tuple(mapping["scale"]), "the mapping (the enrollment's scale)"
  if bundle.info.get("source_scale"):
    return (tuple(bundle.info["source_scale"]),
            "the bundle's source corpus; set config.predict.scale if the "
            "ratings were given on another")
  raise ValueError("the rating scale is not known: this bundle records no "
                   "source scale (exported before annojax recorded it); set "
                   "--config.predict.scale='(low,high)', the scale the "
                   "ratings were given on")


def _warn_if_narrower(t, path, scale, explicit: bool):
  """Read on the bundle's scale (none declared), a file whose ratings all
  lie strictly inside it (a 1-5 test read on 1-7) is named with its
  observed range: CCC, the chosen head and the *_scaled predictions all
  depend on the scale. With the scale declared, the range is only logged
  (a listener need not use every point of a scale)."""
  raw = ratings_lib.unscale(t.values, *scale)
  raw = raw[np.isfinite(raw)]
  if not raw.size:
    return
  lo, hi = float(raw.min()), float(raw.max())
  if explicit or (lo, hi) == scale:
    logging.info("%s: ratings span [%g, %g] of the scale [%g, %g]", path,
                 lo, hi, *scale)
    return
  logging.warning("%s: every rating lies in [%g, %g], inside the scale "
                  "[%g, %g] they were read on (the bundle's source corpus's, "
                  "none was declared): if they were given on a smaller "
                  "scale, set --config.predict.scale (it changes the chosen "
                  "heads and the scaled predictions)", path, lo, hi, *scale)


def _enrollment_table(p, bundle, known_clips, scale):
  """The enrollment ratings of config.predict.ratings (one CSV, or several
  separated by commas: e.g. the first ratings and each round's filled-in
  suggestions) on `scale`, each file checked with its own line numbers;
  None when no file is set (a first round of suggestions)."""
  tables = []
  for path in [f for f in p.ratings.split(",") if f]:
    if bundle.categorical:
      t = read_labels(path, bundle.dims)
    else:
      t = generic_csv.read_ratings(path, bundle.dims, scale,
                                   speaker_optional=True)
      _warn_if_narrower(t, path, scale, explicit=bool(len(p.scale)))
    t, lines = _without_blank_rows(t, path)
    tables.append(ratings_lib.validate(t, known_clips=known_clips,
                                       row_offset=lines, row_word="line"))
  if len(tables) <= 1:
    return tables[0] if tables else None
  both = ratings_lib.make_ratings(
      *(np.concatenate([getattr(t, f) for t in tables])
        for f in ("clip", "annotator", "speaker", "values")),
      bundle.dims, source=p.ratings)
  return ratings_lib.validate(both)  # a pair in two files: averaged, logged


def _without_blank_rows(table, path):
  """Rows with every rating blank (suggested clips the listener did not
  rate) are left out, counted and logged -> (table, each row's CSV line).
  A row with only some of its ratings blank stays, and validate refuses
  it, naming the line."""
  lines = np.arange(len(table)) + 2  # after the header
  blank = np.isnan(table.values).all(1)
  if not blank.any():
    return table, lines
  if blank.all():
    raise ratings_lib.RatingsError(
        f"{path}: no rating filled in (all {len(table)} rows are blank)")
  logging.info("%s: %d rows without a rating left out (lines %s%s): "
               "clips not rated", path, int(blank.sum()),
               lines[blank][:10].tolist(), " ..." if blank.sum() > 10 else "")
  return ratings_lib.with_dropped(table.select(~blank), "no rating (blank "
                                  "row)", int(blank.sum())), lines[~blank]


def run_enroll(config, workdir: str) -> dict:
  """Maps every annotator of config.predict.ratings to pre-trained heads;
  with config.predict.pool, also proposes the clips each should rate next
  (<workdir>/enroll/suggestions.csv, see _suggest)."""
  p = config.predict
  bundle = export.load(_bundle_path(config, workdir))
  if not p.ratings and not p.pool:
    raise ValueError("set --config.predict.ratings to the enrollment ratings "
                     "CSV (clip, annotator, " + ", ".join(bundle.dims) + ")"
                     " (or --config.predict.pool and predict.annotators for "
                     "a first round of suggested clips)")
  if bundle.categorical and p.score not in enroll_lib.CATEGORICAL_SCORES:
    raise ValueError(f"this bundle's heads are categorical: set "
                     f"--config.predict.score to one of "
                     f"{enroll_lib.CATEGORICAL_SCORES}, not {p.score!r}")
  pool = _embeddings(p.pool, bundle) if p.pool else None
  ids, emb = _embeddings(p.embeddings, bundle) if p.embeddings else pool
  if pool is not None and p.embeddings:  # rated clips: in either file
    new = ~np.isin(pool[0], ids)
    ids = np.concatenate([ids, pool[0][new]])
    emb = np.concatenate([emb, pool[1][new]])
  scale = None
  if not bundle.categorical and p.ratings:  # (a first round reads none)
    scale, source = declared_scale(p, bundle)
    logging.info("enrollment ratings read on the scale [%g, %g] (from %s)",
                 *scale, source)
  table = _enrollment_table(p, bundle, ids, scale)
  row_of = {c: i for i, c in enumerate(ids)}
  names = np.unique(table.annotator) if table is not None else np.array([])
  clip_lists, rating_lists = [], []
  for name in names:
    rows = table.annotator == name
    clip_lists.append([row_of[c] for c in table.clip[rows]])
    rating_lists.append(table.values[rows])
  out = {"bundle": os.path.abspath(_bundle_path(config, workdir)),
         "score": p.score, "scale": scale, "annotators": {}}
  if not bundle.categorical and p.score == "ccc":
    out["score_meaning"] = (
        f"sum over the {len(bundle.dims)} dimensions of the head's CCC with "
        f"the enrollment ratings (-{len(bundle.dims)} to "
        f"{len(bundle.dims)}); score_per_dim = score / "
        f"{len(bundle.dims)}, a CCC's range")
  out_dir = os.path.join(workdir, "enroll")
  os.makedirs(out_dir, exist_ok=True)
  # Trunk features once, of the rated clips and the pool's.
  pool_rows = (np.array([row_of[c] for c in pool[0]], np.int64)
               if pool is not None else np.zeros(0, np.int64))
  need = np.unique(np.concatenate(
      [pool_rows, *(np.asarray(c, np.int64) for c in clip_lists)]))
  z = np.zeros((len(ids),) + (len(bundle.dims), bundle.info["model"][
      "hidden"]), np.float32)
  z[need] = bundle.features(emb[need])
  scores = counts = None
  rule = _rule(p, bundle)
  out["rule"] = rule
  if len(names):
    scores, c_e, y_e, m_e = bundle.scores(z, clip_lists, rating_lists,
                                          p.score, list(names))
    counts = m_e.sum(1)
    mapping = enroll_lib.mapping(scores, y_e, m_e, p.top_k, p.weighted)
    blended = None
    if rule == "blended":
      agg = np.zeros((len(ids), len(bundle.dims)), np.float32)
      agg[need] = bundle.consensus(emb[need])
      weights, heads = bundle.blend()
      heads = dataclasses.replace(heads, temperature=np.float32(
          _posterior_settings(p, bundle)[0]))
      blended = blend.enroll_blended(weights, heads, z[c_e], agg[c_e], y_e,
                                     m_e, scores)
      out["blend"] = bundle.info["blend"]["weights"]
    if rule == "fit":  # a new embedding each, beside the mapping
      np.savez(os.path.join(out_dir, FITTED), annotators=np.asarray(
          names, str), embeddings=bundle.fit(z[c_e], y_e, m_e))
    out["annotators"] = _write_mapping(out_dir, out, bundle, names,
                                       clip_lists, mapping, blended)
  if pool is not None:
    out["suggestions"] = _suggest(p, bundle, out_dir, pool[0], z[pool_rows],
                                  names, clip_lists, ids, scores, counts)
  return out


def _rule(p, bundle) -> str:
  """config.predict.rule, checked; "blended" falls back to "top_k" (logged)
  for a bundle without the consensus model."""
  if p.rule == CONSENSUS:
    raise ValueError("config.predict.rule='consensus' needs no enrollment: "
                     "--mode=predict writes the consensus model's "
                     "predictions; enroll with one of " + str(RULES))
  if p.rule not in RULES:
    raise ValueError(f"config.predict.rule={p.rule!r}: one of {RULES}")
  if p.rule == "fit" and "family" not in bundle.info:
    raise ValueError(
        "config.predict.rule='fit' fits a new embedding: it needs a bundle "
        "of an embedding family (config.model.annotators = 'lowrank' or "
        f"'embedding'); this one's annotators are {bundle.family}")
  if p.rule == "blended" and not bundle.linear:
    logging.warning("this bundle's annotators share a nonlinear decoder "
                    "(the %s family): no blended rule; enrolling with the "
                    "top_k rule (or set config.predict.rule='fit')",
                    bundle.family)
    return "top_k"
  if p.rule == "blended" and not bundle.blendable:
    logging.warning("this bundle has no consensus model / blend (%s): "
                    "enrolling with the top_k rule", "categorical heads"
                    if bundle.categorical else "exported before format 4")
    return "top_k"
  if p.rule == "blended" and p.score != bundle.info["blend"]["score"]:
    raise ValueError(f"config.predict.score={p.score!r}: the blended rule "
                     f"was learned with the {bundle.info['blend']['score']!r}"
                     " score; use it, or config.predict.rule='top_k'")
  return p.rule


def _write_blended(out_dir, names, blended) -> dict:
  """blended_heads.npz: each annotator's head on the individual model's
  trunk (the consensus part is in mapping.json) -> per-annotator fields."""
  np.savez(os.path.join(out_dir, BLENDED_HEADS),
           annotators=np.asarray(names, str), kernel=blended.kernel,
           bias=blended.bias)
  return {str(n): {"from_consensus": float(blended.moved[i]),
                   "blend_size": int(blended.size[i]),
                   "consensus_scale": blended.scale[i].tolist(),
                   "consensus_shift": blended.shift[i].tolist()}
          for i, n in enumerate(names)}


def _write_mapping(out_dir, header, bundle, names, clip_lists, mapping,
                   blended=None) -> dict:
  """mapping.json (header + annotators; the annotators returned) and
  mapping.csv, logged. With the blended rule, blended_heads.npz too;
  from_consensus (mapping.csv) says how far each annotator's prediction
  moved from the consensus (0: the consensus at the raters' typical scale,
  1: the individual rules alone; the top_k rule: 1)."""
  extra = _write_blended(out_dir, names, blended) if blended else {}
  heads = bundle.annotator_ids
  annotators = {
      str(name): {
          "heads": heads[mapping.heads[i]].tolist(),
          "head_index": mapping.heads[i].tolist(),
          "weights": mapping.weights[i].tolist(),
          "scores": mapping.scores[i].tolist(),
          "margin": float(mapping.margin[i]),
          "num_clips": len(clip_lists[i]),
          # Dimensions with constant enrollment ratings: scored by RMSE
          # there (CCC is undefined); rate more varied clips.
          "constant_dims": ([] if bundle.categorical else
                            [d for d, c in zip(bundle.dims,
                                               mapping.constant[i]) if c]),
          "from_consensus": 1.0, **extra.get(str(name), {})}
      for i, name in enumerate(names)}
  with open(os.path.join(out_dir, "mapping.json"), "w") as f:
    json.dump({**header, "annotators": annotators}, f, indent=1)
  with open(os.path.join(out_dir, "mapping.csv"), "w", newline="") as f:
    w = csv.writer(f)
    # score: summed over dimensions (ccc: up to D); score_per_dim: / D.
    per_dim = 1 if bundle.categorical else len(bundle.dims)
    # The blended rule predicts with the consensus moved toward the
    # individual rules (from_consensus), not a copy of `head`: its head is
    # the most similar one, for reference, with no copy weight.
    rule = header.get("rule", "top_k")
    w.writerow(["annotator", "num_clips", "rule", "head", "weight", "score",
                "score_per_dim", "margin", "constant_dims",
                "from_consensus"])
    for name, m in annotators.items():
      for h, wt, s in zip(m["heads"], m["weights"], m["scores"]):
        w.writerow([name, m["num_clips"], rule, h,
                    "" if rule == "blended" else f"{wt:.6g}", f"{s:.6g}",
                    f"{s / per_dim:.6g}", f"{m['margin']:.6g}",
                    " ".join(m["constant_dims"]),
                    f"{m['from_consensus']:.4g}"])
  const = [n for n, m in annotators.items() if m["constant_dims"]]
  if const:
    logging.warning("%d annotator(s) gave the same rating to every "
                    "enrollment clip in some dimension (e.g. %r); their head "
                    "there was chosen by RMSE, flagged as constant_dims in "
                    "the mapping", len(const), const[0])
  small = [n for n, m in annotators.items() if m["margin"] < 0.01]
  logging.info("enrolled %d annotators on %d clips -> %s; %d with a score "
               "margin < 0.01 (several heads fit about equally well)",
               len(names), len({c for cl in clip_lists for c in cl}),
               out_dir, len(small))
  if blended is not None:
    logging.info("blended rule: mean move from the consensus %.2f (0: the "
                 "consensus at the raters' typical scale; 1: the individual "
                 "rules); %d of %d annotators stay at the consensus",
                 float(blended.moved.mean()), int((blended.moved == 0).sum()),
                 len(names))
  return annotators


def _suggest(p, bundle, out_dir, pool_ids, z_pool, names, clip_lists, ids,
             scores, counts) -> str:
  """suggestions.csv: for every annotator (rated ones, and those named in
  config.predict.annotators that have no ratings yet) the
  config.predict.propose clips of the pool they have not rated on which the
  heads still in contention disagree most (adaptive.py). Its columns are
  those of the ratings CSV (clip, annotator, one empty column per
  dimension, or `label` for categorical heads) plus rank and spread (the
  posterior s.d. of the heads' predictions, on [-1, 1], or of their class
  probabilities): fill in the ratings (rows left blank are
  skipped, counted in the log) and pass it back in config.predict.ratings
  (comma-separated after the earlier files) for the next round."""
  if p.propose < 1:
    raise ValueError(f"config.predict.propose={p.propose}: suggest at least "
                     "one clip per annotator")
  fresh = [a for a in (s.strip() for s in p.annotators.split(","))
           if a and a not in set(names)]
  everyone = list(names) + fresh
  if not everyone:
    raise ValueError("no annotator to suggest clips for: give ratings "
                     "(config.predict.ratings) or names "
                     "(config.predict.annotators)")
  if not bundle.linear:
    raise ValueError("suggested clips (config.predict.pool) need linear "
                     "heads; this bundle's annotators share a nonlinear "
                     f"decoder (the {bundle.family} family)")
  kernel, bias = bundle.heads()
  pred = adaptive.head_predictions(z_pool, kernel, bias, bundle.categorical)
  weights = np.full((len(everyone), len(kernel)), 1.0 / len(kernel),
                    np.float32)  # no ratings: every head in contention
  temperature, noise = _posterior_settings(p, bundle)
  if len(names):
    weights[:len(names)] = posterior.mixture_weights(
        scores, counts, np.float32(temperature))
  available = np.ones((len(everyone), len(pool_ids)), bool)
  for i, clips in enumerate(clip_lists):
    available[i] = ~np.isin(pool_ids, ids[clips])
  picks, var = adaptive.propose(pred, weights, available, p.propose, noise)
  path = os.path.join(out_dir, "suggestions.csv")
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    rating_columns = ["label"] if bundle.categorical else list(bundle.dims)
    w.writerow(["clip", "annotator", *rating_columns, "rank", "spread"])
    for name, row, v in zip(everyone, picks, var):
      for rank, (c, vv) in enumerate(zip(row, v), start=1):
        if c >= 0:
          w.writerow([pool_ids[c], name, *[""] * len(rating_columns), rank,
                      f"{np.sqrt(vv):.4g}"])
  short = [n for n, row in zip(everyone, picks) if (row < 0).any()]
  logging.info("suggested up to %d clips each for %d annotators (%d without "
               "ratings yet) from a pool of %d -> %s", p.propose,
               len(everyone), len(fresh), len(pool_ids), path)
  if short:
    logging.warning("%d annotator(s) have rated (nearly) the whole pool and "
                    "got fewer suggestions (e.g. %r)", len(short), short[0])
  return path


def _posterior_settings(p, bundle) -> tuple[float, float]:
  """(temperature, rating noise) of the posterior over heads: the config's
  where set (> 0), else the bundle's (tuned at export on the source's
  held-out raters), else 1.0 and 0.1 (bundles from before the tuning);
  categorical heads: 1.0 (Bayes' rule with the log-likelihood score) and
  adaptive.CATEGORICAL_NOISE."""
  tuned = bundle.info.get("posterior") or {}
  out = []
  for name, fallback in (("temperature", 1.0), ("noise", (
      adaptive.CATEGORICAL_NOISE if bundle.categorical else 0.1))):
    value = float(p[name])
    if value < 0:
      raise ValueError(f"config.predict.{name}={value}: use a positive "
                       "value, or 0 for the bundle's tuned one")
    if value:
      source = "config.predict"
    elif name in tuned:
      value, source = float(tuned[name]), f"tuned on {tuned['tuned_on']}"
    elif bundle.categorical:
      value, source = fallback, "categorical heads"
    else:
      value, source = fallback, "default: the bundle has no tuned value"
    logging.info("posterior over heads: %s %g (%s)", name, value, source)
    out.append(value)
  return out[0], out[1]


def _blended(mapping, mapping_path, bundle, emb):
  """A blended mapping's (annotator -> row, kernel, bias, consensus output
  on the clips); None for a top_k mapping."""
  if mapping.get("rule") != "blended":
    return None
  if not bundle.blendable:
    raise ValueError(f"{mapping_path}: enrolled with the blended rule, but "
                     "this bundle has no consensus model; use the bundle it "
                     "was enrolled with")
  path = os.path.join(os.path.dirname(mapping_path), BLENDED_HEADS)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: the blended rule's heads, written by "
                            "--mode=enroll beside the mapping, are missing")
  with np.load(path) as f:
    row = {str(a): i for i, a in enumerate(f["annotators"])}
    return row, f["kernel"], f["bias"], bundle.consensus(emb)


def _predictor(mapping, mapping_path, bundle, z):
  """(name, head indices, weights) -> that annotator's predictions [C, D]
  on z: the fit rule's embedding (FITTED beside the mapping), else the
  weighted mean of the selected annotators (linear heads: their averaged
  head; the embedding decoder: their averaged predictions)."""
  clips = np.arange(len(z))
  if mapping.get("rule") == "fit":
    path = os.path.join(os.path.dirname(mapping_path), FITTED)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: the fit rule's embeddings, written "
                              "by --mode=enroll beside the mapping, are "
                              "missing")
    with np.load(path) as f:
      fitted = dict(zip(map(str, f["annotators"]), f["embeddings"]))

    def fit(name, idx, weights):
      del idx, weights
      if name not in fitted:
        raise ValueError(f"{mapping_path}: annotator {name!r} has no "
                         f"embedding in {FITTED}; enroll again")
      return rater_embeddings.outputs_at(
          bundle.params["heads"], z, clips,
          np.broadcast_to(fitted[name], (len(z), len(fitted[name]))))
    return fit
  if bundle.linear:
    kernel, bias = bundle.heads()

    def copy(name, idx, weights):
      del name
      k, b = enroll_lib.combine_heads(idx, weights, kernel, bias)
      return np.einsum("cdh,dh->cd", z, k) + b
    return copy
  table = rater_embeddings.table(bundle.params["heads"])

  def copy_decoder(name, idx, weights):
    del name
    return sum(w * rater_embeddings.outputs_at(
        bundle.params["heads"], z, clips,
        np.broadcast_to(table[i], (len(z), table.shape[1])))
               for i, w in zip(idx, weights))
  return copy_decoder


def run_predict(config, workdir: str) -> str:
  """Writes every mapped annotator's predictions for every clip; without
  an enrollment (no mapping) or with config.predict.rule = "consensus",
  the consensus model's (_consensus)."""
  p = config.predict
  mapping_path = p.mapping or os.path.join(workdir, "enroll", "mapping.json")
  mapping = None
  if p.rule == CONSENSUS or (not p.mapping and
                             not os.path.exists(mapping_path)):
    bundle = _consensus_bundle(config, workdir, mapping_path)
  elif not os.path.exists(mapping_path):
    raise FileNotFoundError(f"no enrollment mapping at {mapping_path} "
                            "(config.predict.mapping); run --mode=enroll "
                            "first")
  else:
    with open(mapping_path) as f:
      mapping = json.load(f)
    bundle = export.load(p.bundle or mapping["bundle"])
  ids, emb = _embeddings(p.embeddings, bundle)
  scale = None
  if not bundle.categorical:
    scale, source = declared_scale(p, bundle, mapping)
    logging.info("scaled predictions on [%g, %g] (from %s)", *scale, source)
  z = None if mapping is None else bundle.features(emb)
  path = _write_predictions(
      workdir, p, bundle, ids, scale,
      _consensus(bundle, emb) if mapping is None else
      _mapped(mapping, mapping_path, bundle, emb, z))
  if p.distribution:
    _write_distributions(os.path.dirname(path), bundle, ids,
                         bundle.features(emb) if z is None else z, scale)
  return path


def _mapped(mapping, mapping_path, bundle, emb, z):
  """(annotator, predictions [C, D]) of every annotator in the mapping."""
  n_heads = len(bundle.annotator_ids)
  blended = _blended(mapping, mapping_path, bundle, emb)
  annotator = _predictor(mapping, mapping_path, bundle, z)
  for name, m in mapping["annotators"].items():
    idx = np.asarray(m["head_index"])
    if (idx >= n_heads).any() or list(bundle.annotator_ids[idx]) != m[
        "heads"]:
      raise ValueError(f"{mapping_path}: annotator {name!r} maps to heads "
                       f"{m['heads']} that this bundle does not have in "
                       "that order; enroll again with this bundle")
    if blended is not None:  # its own head, + the consensus
      row, k_b, b_b, agg = blended
      if name not in row:
        raise ValueError(f"{mapping_path}: annotator {name!r} has no head "
                         f"in {BLENDED_HEADS}; enroll again")
      pred = (np.einsum("cdh,dh->cd", z, k_b[row[name]]) + b_b[row[name]]
              + np.asarray(m["consensus_scale"]) * agg
              + np.asarray(m["consensus_shift"]))
    else:
      pred = annotator(name, idx, np.asarray(m["weights"], np.float32))
    yield name, pred


CONSENSUS = "consensus"  # predict's rule without an enrollment
TYPICAL = "consensus_typical"


def _consensus_bundle(config, workdir: str, mapping_path: str):
  """The bundle to predict the consensus with (it must have the consensus
  model), logged as the source of the predictions."""
  p = config.predict
  bundle = export.load(_bundle_path(config, workdir))
  if bundle.categorical or bundle.aggregate is None:
    raise ValueError(
        f"no enrollment mapping at {mapping_path}, and this bundle has no "
        "consensus model to predict with ("
        + ("categorical heads" if bundle.categorical else
           "exported before format 4") + "); run --mode=enroll first")
  logging.info("%s: the consensus model's predictions (annotators %r, raw, "
               "and %r, at the raters' typical scale)",
               "config.predict.rule='consensus'" if p.rule == CONSENSUS else
               f"no enrollment mapping at {mapping_path}", CONSENSUS, TYPICAL)
  return bundle


def _consensus(bundle, emb) -> list:
  """The consensus model (the baseline every listener's predictions are
  compared with) as two annotators: "consensus", its raw output, and
  "consensus_typical", the consensus at the raters' typical scale (the
  source's held-out raters' spread around it: the blended rule's starting
  point, aggregate_rescaled in the protocol)."""
  agg = bundle.consensus(emb)
  rescale = bundle.info["blend"]["rescale"]
  a, c = (np.asarray(rescale[k], np.float32) for k in ("a", "c"))
  return [(CONSENSUS, agg), (TYPICAL, a * agg + c)]


def _write_predictions(workdir, p, bundle, ids, scale, predictions) -> str:
  """<workdir>/predict/predictions.csv of (annotator, predictions [C, D])
  pairs: dimensions on [-1, 1] and scaled (clipped to the scale with
  config.predict.clip), or class probabilities and the top class."""
  out_dir = os.path.join(workdir, "predict")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "predictions.csv")
  clipped = total = written = 0
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    if bundle.categorical:  # class probabilities and the top class
      w.writerow(["clip", "annotator", *bundle.dims, "label"])
    else:
      w.writerow(["clip", "annotator", *bundle.dims,
                  *[f"{d}_scaled" for d in bundle.dims]])
    for name, pred in predictions:
      written += 1
      if bundle.categorical:
        prob = np.exp(metrics.log_softmax(pred))
        top = np.asarray(bundle.dims)[prob.argmax(1)]
        for c, row, t in zip(ids, prob, top):
          w.writerow([c, name, *[f"{v:.6g}" for v in row], t])
        continue
      total += pred.size
      if p.clip:
        clipped += int((np.abs(pred) > 1.0).sum())
        pred = np.clip(pred, -1.0, 1.0)
      scaled = ratings_lib.unscale(pred, *scale)
      for c, row, srow in zip(ids, pred, scaled):
        w.writerow([c, name, *[f"{v:.6g}" for v in row],
                    *[f"{v:.6g}" for v in srow]])
  logging.info("wrote predictions of %d annotators on %d clips to %s",
               written, len(ids), path)
  if clipped:
    logging.info("%d of %d predicted values (%.2f%%) lay outside the rating "
                 "scale and were clipped to it (config.predict.clip)",
                 clipped, total, 100.0 * clipped / total)
  return path


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _write_distributions(out_dir, bundle, ids, z, scale) -> str:
  """distributions.csv (module doc): per clip and dimension the predicted
  rating distribution's mean, s.d. and quantiles, on [-1, 1] and scaled."""
  mix = None if bundle.categorical else bundle.distribution(z)
  if mix is None:
    raise ValueError(
        "config.predict.distribution: this bundle has no rating "
        "distribution (bundle info 'distribution': dimensional bundles of "
        "linear heads exported by this annojax); export it again, or leave "
        "config.predict.distribution off")
  # The bundle's scale may not be the one predicted on: quantiles from the
  # continuous distribution, not from a Likert scale's levels.
  flat = distributions.Scale()
  mean, sd = distributions.spread(mix, flat)
  q = distributions.quantiles(mix, flat, QUANTILES)  # [C, D, Q]
  lo, hi = scale
  half = (hi - lo) / 2
  names = ["mean", "sd"] + [f"q{round(100 * v):02d}" for v in QUANTILES]
  values = np.concatenate([mean[..., None], sd[..., None], q], -1)
  scaled = np.concatenate([ratings_lib.unscale(mean, lo, hi)[..., None],
                           sd[..., None] * half,
                           ratings_lib.unscale(q, lo, hi)], -1)
  path = os.path.join(out_dir, "distributions.csv")
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["clip"] + [f"{d}_{n}" for d in bundle.dims for n in names]
               + [f"{d}_{n}_scaled" for d in bundle.dims for n in names])
    for c, v, s in zip(ids, values, scaled):
      w.writerow([c, *[f"{x:.6g}" for x in v.ravel()],
                  *[f"{x:.6g}" for x in s.ravel()]])
  logging.info("wrote the rating distributions of %d clips to %s (KDE of "
               "%d heads, widths %s)", len(ids), path,
               len(bundle.annotator_ids), bundle.info["distribution"]["width"])
  return path
