"""Mutation check of the test suite: does a small deliberate bug fail a test?

  python bench/mutate.py                 # every mutant, its own test files
  python bench/mutate.py --full          # every mutant, the whole suite
  python bench/mutate.py head_bias_dense no_plateau   # some mutants
  python bench/mutate.py --list

Each mutant replaces one snippet of one source file (the snippet must occur
exactly once, so a stale mutant fails loudly instead of testing nothing),
in a scratch copy of the repository (git's tracked and unignored files): the
working tree is never touched. The tests then run there with -x; a failing
run KILLS the mutant, a passing one means it SURVIVED: no test notices that
bug. Without --full each mutant runs only the test files named with it
(minutes, not hours); a mutant killed by them is killed by the suite, one
that survives them may still die in --full. Prints a markdown table
(--out writes it too); exit status 1 if any mutant survived.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutant:
  name: str
  path: str
  find: str
  replace: str
  what: str
  tests: tuple[str, ...]


M = Mutant
MUTANTS = [
    M("head_bias_dense", "annojax/models.py",
      'return jnp.einsum("bdh,adh->bad", z, self.kernel) + self.bias',
      'return jnp.einsum("bdh,adh->bad", z, self.kernel)',
      "heads' bias never added (all-heads path)", ("tests/test_models.py",)),
    M("head_bias_gathered", "annojax/models.py",
      "return (z[:, None] * kernel).sum(-1) + bias",
      "return (z[:, None] * kernel).sum(-1)",
      "heads' bias never added (gathered, sparse-layout path)",
      ("tests/test_models.py",)),
    M("host_bias", "annojax/train.py",
      '+ bias[pair_head])', ')',
      "host-side pair predictions (validation, protocol) drop the bias",
      ("tests/test_models.py", "tests/test_train.py")),
    M("train_returns_latest", "annojax/train.py",
      'best_state, best_host = ckpts.restore(state, "best")',
      'best_state, best_host = ckpts.restore(state, "latest")',
      "training returns the latest params, not the best",
      ("tests/test_train.py",)),
    M("load_best_latest", "annojax/train.py",
      'best, _ = ckpts.restore(state, "best")',
      'best, _ = ckpts.restore(state, "latest")',
      "load_best (protocol, export) restores the latest checkpoint",
      ("tests/test_train.py", "tests/test_export.py")),
    M("enroll_from_test_rows", "annojax/protocol/context.py",
      "run.rng, run.pool_by_ann, k)) for k in ev.enroll_sizes}",
      "run.rng, self.test_by_ann, k)) for k in ev.enroll_sizes}",
      "run_protocol draws enrollment clips from the annotator's TEST rows",
      ("tests/test_evaluate.py",)),
    M("pool_includes_test", "annojax/protocol/folds.py",
      "is_pool = np.isin(pair_spk, train_speakers)",
      "is_pool = np.isin(pair_spk, np.union1d(train_speakers, "
      "test_speakers))",
      "the enrollment pool includes the test speakers' clips",
      ("tests/test_evaluate.py",)),
    M("no_plateau", "annojax/train.py",
      'host["lr"] *= config.optim.plateau_factor',
      'host["lr"] *= 1.0',
      "the learning rate never drops on a plateau", ("tests/test_train.py",)),
    M("no_early_stop", "annojax/train.py",
      'host["stopped_early"] = True', 'host["stopped_early"] = False',
      "early stopping never fires", ("tests/test_train.py",)),
    M("aggregate_runs_reversed", "annojax/protocol/summary.py",
      "base = np.array([base_runs[k][metric] for k in keys], np.float64)",
      "base = np.array([base_runs[k][metric] for k in keys[::-1]], "
      "np.float64)",
      "the aggregate row's runs are paired in reverse order",
      ("tests/test_evaluate.py",)),
    M("ccc_con_on_own_ratings", "annojax/protocol/summary.py",
      '"ccc_con": metrics.ccc_con(pred, table.consensus[clip], clip)}',
      '"ccc_con": metrics.ccc_con(pred, y, clip)}',
      "CCC_con scored against the test annotators' ratings, not the "
      "consensus of all", ("tests/test_evaluate.py",)),
    M("mean_heads_first_head", "annojax/protocol/context.py",
      'return np.einsum("cdh,dh->cd", self.z, self.kernel.mean(0)\n'
      '                     ) + self.bias.mean(0)',
      'return np.einsum("cdh,dh->cd", self.z, self.kernel[0]) + self.bias[0]',
      "the mean-heads row uses the first head", ("tests/test_evaluate.py",)),
    M("linear_fit_no_intercept", "annojax/baselines.py",
      "return (sxy * n - sx * sy) / det, (sxx * sy - sx * sxy) / det",
      "return (sxy * n - sx * sy) / det, 0.0 * sy",
      "the per-annotator linear fit loses its intercept",
      ("tests/test_evaluate.py",)),
    M("finetune_no_l2", "annojax/baselines.py",
      "return (mse + l2 * reg).sum()", "return mse.sum()",
      "fine-tuning ignores its L2 pull toward the mapped head",
      ("tests/test_evaluate.py",)),
    M("finetune_no_steps", "annojax/baselines.py",
      "return jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))[0]",
      "return params",
      "fine-tuning returns the mapped head unchanged",
      ("tests/test_evaluate.py",)),
    M("calibrate_no_shrink", "annojax/baselines.py",
      "  w = n / (n + shrink)\n", "  w = n / n\n",
      "calibration ignores its shrinkage", ("tests/test_evaluate.py",)),
    M("dropout_never", "annojax/models.py",
      "if rng is not None and self.dropout > 0:",
      "if rng is not None and self.dropout > 1:",
      "dropout is never applied in training", ("tests/test_models.py",
                                               "tests/test_train.py")),
    M("val_test_same_speakers", "annojax/data/prepare.py",
      "    start += n\n", "",
      "prepare's validation and test splits take the same speakers",
      ("tests/test_data.py",)),
    M("sgd_no_momentum", "annojax/train.py",
      "learning_rate=o.learning_rate, momentum=o.momentum)",
      "learning_rate=o.learning_rate, momentum=None)",
      "the reference SGD ignores its momentum", ("tests/test_train.py",)),
    M("standardize_on_all_clips", "annojax/data/prepare.py",
      'standardizer(src_corpus.embeddings[src_splits["train"]])',
      "standardizer(src_corpus.embeddings)",
      "feature statistics include the validation/test clips",
      ("tests/test_data.py",)),
    M("replicates_share_seed", "annojax/train.py",
      "return int(config.train.seed) + int(replicate)",
      "return int(config.train.seed)",
      "every replicate trains with the same seed", ("tests/test_train.py",
                                                    "tests/test_evaluate.py")),
    M("folds_ignore_seed", "annojax/protocol/folds.py",
      "perm = np.random.default_rng([seed, 0xF01D]).permutation(uniq)",
      "perm = np.random.default_rng([0, 0xF01D]).permutation(uniq)",
      "every seed gets the same speaker folds", ("tests/test_evaluate.py",)),
    M("leakage_check_off", "annojax/data/prepare.py",
      "leaks = [k for k in OVERLAP_KINDS if out[k] and k not in allow]",
      "leaks = []", "the leakage check never fires", ("tests/test_data.py",)),
    M("sparse_labels_misaligned", "annojax/data/pipeline.py",
      "annotators[row, slot] = clips.annotators",
      "annotators[row, slot] = clips.annotators[::-1]",
      "sparse batches pair ratings with the wrong heads",
      ("tests/test_data.py", "tests/test_train.py")),
    M("consensus_from_heads_only", "annojax/data/prepare.py",
      "cons = ratings_lib.consensus_of(full, corpus.clips[keep])",
      "cons = ratings_lib.consensus_of(table, corpus.clips[keep])",
      "the consensus leaves out annotators without a head",
      ("tests/test_data.py",)),
    M("train_step_no_dropout", "annojax/train.py",
      'z = model.trunk(batch["embedding"], rng)',
      'z = model.trunk(batch["embedding"], None)',
      "training steps never pass the dropout key", ("tests/test_train.py",)),
    M("splits_ignored", "annojax/corpora/msp_podcast.py",
      "if not keep_all and split not in splits:", "if False:",
      "MSP-Podcast's Split_Set is ignored (pre-training on every split)",
      ("tests/test_release_formats.py", "tests/test_readers.py")),
    M("iemocap_reads_comments", "annojax/corpora/iemocap.py",
      'found = dict(_VALUE.findall(m.group(2).split("\\t", 1)[0]))',
      "found = dict(_VALUE.findall(m.group(2)))",
      "IEMOCAP values are also read from the trailing comment",
      ("tests/test_release_formats.py", "tests/test_readers.py")),
    M("self_reports_kept", "annojax/corpora/iemocap.py",
      "if not self_reports:", "if False:",
      "IEMOCAP actors' self-evaluations become ordinary annotators",
      ("tests/test_release_formats.py", "tests/test_readers.py")),
    M("clip_id_keeps_extension", "annojax/corpora/ratings.py",
      "if not stem or ext.lower() not in MEDIA_EXTENSIONS:", "if True:",
      "clip ids keep their .wav (readers and embeddings stop joining)",
      ("tests/test_release_formats.py", "tests/test_features.py")),
    M("merges_not_counted", "annojax/corpora/ratings.py",
      "(averaged)\",\n      len(keys) - len(uniq))", "(averaged)\", 0)",
      "averaged duplicate ratings are not counted in Ratings.dropped",
      ("tests/test_release_formats.py", "tests/test_data.py")),
    M("top1_is_worst", "annojax/enroll.py",
      "vals, idx = jax.lax.top_k(jnp.asarray(scores), max(top_k, 2)",
      "vals, idx = jax.lax.top_k(-jnp.asarray(scores), max(top_k, 2)",
      "enrollment selects the worst-scoring head", ("tests/test_enroll.py",)),
    M("raters_with_replacement", "annojax/corpora/synthetic.py",
      "todo = todo[(raters[todo, :slot] == draw[:, None]).any(1)]",
      "todo = todo[:0]",
      "the generator's rater slots drawn with replacement (a rater twice "
      "on a clip)", ("tests/test_synthetic.py",)),
    M("raters_all_chunk_keys", "annojax/corpora/synthetic.py",
      "  activity = rng.lognormal(0.0, spread, size=num_annotators)\n"
      "  return sample_raters(",
      "  activity = rng.lognormal(0.0, spread, size=num_annotators)\n"
      "  keys = [np.argpartition(-(np.log(activity) + rng.gumbel(size=(\n"
      "      min(1024, num_clips - s), num_annotators))), raters_per_clip - 1,"
      "\n      axis=1)[:, :raters_per_clip] for s in range(0, num_clips, 1024)]"
      "\n  return np.concatenate(keys)\n  return sample_raters(",
      "the old Gumbel assignment that keeps every chunk's [1024, A] keys "
      "alive (memory clips x annotators)", ("tests/test_synthetic.py",)),
    M("predict_unclipped", "annojax/predict.py",
      "pred = np.clip(pred, -1.0, 1.0)", "pass",
      "--mode=predict writes values outside the rating scale",
      ("tests/test_export.py",)),
    M("prepare_rereads", "annojax/data/prepare.py",
      "  if not os.path.exists(record):\n    return None",
      "  return None",
      "train / export read and validate the corpora again after prepare",
      ("tests/test_data.py",)),
    M("resume_other_data", "annojax/train.py",
      "  if stored != origin:",
      "  if False:",
      "training resumes / export restores checkpoints of another dataset",
      ("tests/test_train.py",)),
    M("row_sparse_no_catch_up", "annojax/head_optim.py",
      "    p_slots, s_slots[\"momentum\"] = _catch_up(",
      "    _ = _catch_up(",
      "row-sparse SGD forgets the steps a head skipped (momentum not decayed,"
      " parameters not moved)", ("tests/test_head_optim.py",)),
    M("row_sparse_no_flush", "annojax/head_optim.py",
      "  if optimizer != \"sgd\":\n    return state",
      "  if True:\n    return state",
      "row-sparse SGD never brings every head up to date before params are "
      "read", ("tests/test_head_optim.py",)),
    M("row_sparse_repeats_not_summed", "annojax/head_optim.py",
      "g.at[first].add(", "g.at[first].set(",
      "a head rated on several clips of a batch keeps one clip's gradient",
      ("tests/test_head_optim.py",)),
    M("lazy_adam_no_bias_correction", "annojax/head_optim.py",
      "p - lr * (m / (1 - b1 ** t))", "p - lr * m",
      "row-sparse Adam without bias correction of its first moment",
      ("tests/test_head_optim.py",)),
    M("window_not_shuffled", "annojax/data/pipeline.py",
      "out.append(rng.permutation(rows))", "out.append(rows)",
      "an epoch's clips come record by record, unshuffled within a window",
      ("tests/test_data.py",)),
    M("uncached_take_misplaced", "annojax/data/pipeline.py",
      "local = (np.searchsorted(blocks, rows // self.block) * self.block",
      "local = (0 * self.block",
      "uncached reads take the wrong clips of the records they read",
      ("tests/test_data.py",)),
    M("pooled_last_fold_only", "annojax/protocol/loop.py",
      "np.concatenate([p for _, p in parts]), target.table,\n"
      "        np.concatenate([r for r, _ in parts]), target.categorical)",
      "parts[-1][1], target.table, parts[-1][0], target.categorical)",
      "the pooled table scores only the last fold's predictions",
      ("tests/test_evaluate.py",)),
    M("partition_keeps_crossing", "annojax/corpora/listening_test.py",
      "if keep_l is not None and ((who in keep_l) != want\n"
      "                               or (spk in keep_s) != want):",
      "if keep_l is not None and ((who in keep_l) != want\n"
      "                               and (spk in keep_s) != want):",
      "the listening-test partition keeps ratings whose listener OR speaker "
      "is in the part (shared listeners / speakers)",
      ("tests/test_listening_test.py",)),
    M("variants_not_unified", "annojax/corpora/listening_test.py",
      "      return clip[:-len(suffix)] + variants[0]", "      return clip",
      "a stimulus's `_d5` name is not joined with its `_stimulus` features",
      ("tests/test_listening_test.py",)),
    M("best_peer_is_self", "annojax/label_stats.py",
      "      n[i] = 0\n", "",
      "an annotator counts as their own best peer",
      ("tests/test_label_stats.py",)),
    M("opensmile_csv_keeps_frametime", "annojax/corpora/embeddings.py",
      '_SKIP = ("frametime", "start", "end")', '_SKIP = ("start", "end")',
      "SMILExtract's frameTime column imported as a feature",
      ("tests/test_listening_test.py",)),
    M("eb_prior_isotropic", "annojax/posterior.py",
      "  gram = (jnp.einsum(\"ndkr,ndlr->ndkl\", xu, xu) + rest",
      "  gram = (0 * jnp.einsum(\"ndkr,ndlr->ndkl\", xu, xu) + rest",
      "the empirical-Bayes head ignores the heads' principal directions in "
      "its prior", ("tests/test_posterior.py",)),
    M("mixture_ignores_clip_count", "annojax/posterior.py",
      "scores * counts[:, None] / temperature", "scores / temperature",
      "the mixture's posterior does not sharpen with more enrollment clips",
      ("tests/test_posterior.py",)),
    M("tuning_sees_own_head", "annojax/posterior.py",
      "  scores[np.arange(len(who)), who] = -np.inf  # not their own head\n",
      "",
      "the temperature is tuned with each source rater's own head among the "
      "candidates", ("tests/test_posterior.py",)),
    M("adaptive_least_disputed", "annojax/adaptive.py",
      "    c = masked.argmax(1)\n",
      "    c = jnp.where(avail, var, jnp.inf).argmin(1)\n",
      "adaptive choice asks for the clip the heads agree on most",
      ("tests/test_adaptive.py",)),
    M("adaptive_round_not_conditioned", "annojax/adaptive.py",
      "    var = jnp.maximum(var - col * col, 0.0)\n", "",
      "a round of several clips ignores what its earlier picks explain "
      "(duplicates)", ("tests/test_adaptive.py",)),
    M("adaptive_clip_asked_twice", "annojax/adaptive.py",
      "      available[i, picks[i]] = False\n", "",
      "the simulation may ask an annotator for the same clip again",
      ("tests/test_adaptive.py",)),
    M("adaptive_sets_not_prefixes", "annojax/protocol/context.py",
      "chosen = [r[o[:k]] for r, o in zip(self.run.pool_by_ann,",
      "chosen = [r[o[-k:]] for r, o in zip(self.run.pool_by_ann,",
      "the adaptive k-clip set is not the first k clips chosen",
      ("tests/test_evaluate.py",)),
    M("oracle_chance_unshuffled", "annojax/protocol/rows.py",
      "clips = [shuffle.permutation(c) for c in clips]",
      "clips = [c for c in clips]",
      "the oracle's chance level is the oracle itself (clips not shuffled)",
      ("tests/test_evaluate.py",)),
    M("oracle_calibrated_mean_only", "annojax/protocol/context.py",
      "return baselines.calibrate(self.aggregate_clip[cidx], y_all, m_all,\n"
      "                               shrink=0.0)",
      "moments = baselines.metrics.masked_moments\n"
      "    return (np.ones_like(y_all[:, 0]), moments(y_all, m_all)[1]"
      " - moments(self.aggregate_clip[cidx], m_all)[1])",
      "the calibration ceiling matches the annotator's mean, not the s.d.",
      ("tests/test_evaluate.py",)),
    M("blank_rows_shift_lines", "annojax/predict.py",
      "int(blank.sum())), lines[~blank]",
      "int(blank.sum())), lines[:(~blank).sum()]",
      "after blank rows are skipped, errors name the wrong CSV line",
      ("tests/test_export.py",)),
    M("suggest_rated_clips", "annojax/predict.py",
      "    available[i] = ~np.isin(pool_ids, ids[clips])\n",
      "    available[i] = np.isin(pool_ids, pool_ids)\n",
      "suggestions include clips the annotator has already rated",
      ("tests/test_export.py",)),
    M("categorical_adaptive_on_logits", "annojax/adaptive.py",
      "return jax.nn.softmax(out, -1) if categorical else out",
      "return out",
      "categorical heads are compared on their logits, not their class "
      "probabilities", ("tests/test_adaptive.py", "tests/test_categorical.py")),
    M("categorical_posterior_tempered", "annojax/protocol/context.py",
      "return 1.0 if self.target.categorical else self.tuned.temperature",
      "return 10.0 if self.target.categorical else self.tuned.temperature",
      "the protocol's posterior for categorical heads is not Bayes' rule "
      "(T = 10)", ("tests/test_categorical.py",)),
    M("rescale_on_target", "annojax/protocol/context.py",
      "return source.typical_scale(self.target.held_packed,\n"
      "                                self.held_aggregate)",
      "return source.typical_scale(self.target.packed,\n"
      "                                self.aggregate_clip)",
      "aggregate_rescaled is fit on the TARGET's ratings (test clips "
      "included), not the source's held-out raters",
      ("tests/test_evaluate.py",)),
    M("rescale_unweighted", "annojax/baselines.py",
      "a = np.sqrt((n * vy).sum(0) / np.maximum((n * vx).sum(0), 1e-12))",
      "a = np.sqrt(vy.mean(0) / np.maximum(vx.mean(0), 1e-12))",
      "the raters' typical scale ignores how many clips each rater has",
      ("tests/test_evaluate.py",)),
    # The reported metrics (issue: tested against an independent
    # computation): averaging, thresholds, degrees of freedom, sidedness.
    M("enroll_scale_default_1_7", "annojax/predict.py",
      "    scale, source = declared_scale(p, bundle)\n",
      "    scale, source = (1.0, 7.0), \"default\"\n",
      "enroll reads every ratings file on 1-7, whatever scale is declared "
      "(the old silent default)", ("tests/test_export.py",)),
    M("predict_scale_not_from_mapping", "annojax/predict.py",
      "    (lo, hi), source = declared_scale(p, bundle, mapping)",
      "    (lo, hi), source = declared_scale(p, bundle)",
      "predict writes *_scaled on the bundle's scale, not the one the "
      "enrollment used", ("tests/test_export.py",)),
    M("ccc_ind_weighted", "annojax/metrics.py",
      "  return per[keep].mean(0)",
      "  return (per[keep] * cnt[keep, None]).sum(0) / cnt[keep].sum()",
      "CCC_ind weights each annotator by their number of ratings",
      ("tests/test_metrics.py",)),
    M("ccc_ind_below_min_count", "annojax/metrics.py",
      "  keep = cnt >= min_count", "  keep = cnt >= 1",
      "annotators below min_count enter CCC_ind's mean",
      ("tests/test_metrics.py",)),
    M("ccc_ind_min_count_strict", "annojax/metrics.py",
      "  keep = cnt >= min_count", "  keep = cnt > min_count",
      "CCC_ind leaves out annotators with exactly min_count pairs",
      ("tests/test_metrics.py",)),
    M("ccc_sample_variance", "annojax/metrics.py",
      "  vp, vy = pred.var(0), label.var(0)",
      "  vp, vy = pred.var(0, ddof=1), label.var(0, ddof=1)",
      "CCC with sample variances (n - 1) beside a population covariance",
      ("tests/test_metrics.py",)),
    M("ccc_group_sample_moments", "annojax/metrics.py",
      "  vp, vy, cov = vp / cnt[:, None], vy / cnt[:, None], cov / cnt[:, None]",
      "  n1 = np.maximum(cnt[:, None] - 1, 1)\n"
      "  vp, vy, cov = vp / n1, vy / n1, cov / n1",
      "per-annotator CCC with sample moments (n - 1)",
      ("tests/test_metrics.py",)),
    M("ccc_no_mean_gap", "annojax/metrics.py",
      "  den = vp + vy + (mp - my) ** 2", "  den = vp + vy",
      "CCC ignores the gap between the means (a correlation, not "
      "concordance)", ("tests/test_metrics.py",)),
    M("ccc_nan_as_zero", "annojax/metrics.py",
      "  undefined = np.where(np.isnan(den), np.nan, 0.0)",
      "  undefined = 0.0",
      "a NaN prediction or rating gives CCC 0 (a silent number)",
      ("tests/test_metrics.py",)),
    M("ccc_con_over_pairs", "annojax/metrics.py",
      "  return ccc(sp / cnt[:, None], sy / cnt[:, None])",
      "  return ccc(pred, label)",
      "CCC_con over rating pairs, not over clips' mean predictions",
      ("tests/test_metrics.py",)),
    M("agreement_pooled_over_clips", "annojax/metrics.py",
      "agreement_ind(logits, label,\n"
      "                                               annotator).mean()",
      "agreement_ind(logits, label,\n"
      "                                               np.zeros(len(annotator)"
      ")).mean()",
      "categorical agreement_ind pooled over clips (annotators weighted by "
      "their clips)", ("tests/test_metrics.py",)),
    M("loglik_pooled_over_clips", "annojax/metrics.py",
      "float(loglik_ind(logits, label, annotator).mean())",
      "float(loglik_ind(logits, label, np.zeros(len(annotator))).mean())",
      "categorical loglik_ind pooled over clips", ("tests/test_metrics.py",)),
    M("loglik_unnormalised", "annojax/metrics.py",
      "(target * log_softmax(logits)).sum(-1)",
      "(target * np.asarray(logits, np.float64)).sum(-1)",
      "loglik_ind on raw logits, not log-probabilities",
      ("tests/test_metrics.py",)),
    M("t_test_unpaired", "annojax/metrics.py",
      "stats.ttest_rel(values, baseline)", "stats.ttest_ind(values, baseline)",
      "the paired t-test is an unpaired one (2n - 2 degrees of freedom)",
      ("tests/test_metrics.py",)),
    M("t_test_one_sided", "annojax/metrics.py",
      "stats.ttest_rel(values, baseline)",
      "stats.ttest_rel(values, baseline, alternative=\"greater\")",
      "the t-test is one-sided", ("tests/test_metrics.py",)),
    M("wilcoxon_one_sided", "annojax/metrics.py",
      "stats.wilcoxon(values, baseline).pvalue",
      "stats.wilcoxon(values, baseline, alternative=\"greater\").pvalue",
      "the Wilcoxon test is one-sided", ("tests/test_metrics.py",)),
    M("seed_test_first_fold", "annojax/protocol/summary.py",
      "np.array([np.nanmean(v[seed_of == s], 0) for s in seeds])",
      "np.array([v[seed_of == s][0] for s in seeds])",
      "the seed-level test takes each seed's first fold, not its mean",
      ("tests/test_metrics.py",)),
    M("summary_std_sample", "annojax/protocol/summary.py",
      "\"std\": float(np.nanstd(vals)),",
      "\"std\": float(np.nanstd(vals, ddof=1)),",
      "the table's s.d. over runs with n - 1 (the header says over runs)",
      ("tests/test_metrics.py",)),
    M("marks_from_raw_p", "annojax/protocol/summary.py",
      'return cell.get(f"{test}_adjusted", cell.get(test, 1.0))',
      "return cell.get(test, 1.0)",
      "results.md marks cells by their raw p, uncorrected for the table's "
      "number of comparisons", ("tests/test_evaluate.py",)),
    M("bh_not_step_up", "annojax/metrics.py",
      "np.minimum(np.minimum.accumulate(scaled[::-1])[::-1],",
      "np.minimum(scaled,",
      "Benjamini-Hochberg without the step-up minimum (adjusted p not "
      "monotone in p)", ("tests/test_metrics.py",)),
    M("blend_gate_ignored", "annojax/blend.py",
      "g = (p.gain > blend.threshold[idx]).astype(np.float64)",
      "g = np.ones(len(p.gain))",
      "the blended rule ignores the annotator's evidence gate",
      ("tests/test_blend.py",)),
    M("blend_no_evidence_bar", "annojax/blend.py",
      "if not diff.mean() > EVIDENCE_Z * se:",
      "if False:",
      "the blend keeps the best source weights even where they do not beat "
      "the consensus beyond noise", ("tests/test_blend.py",)),
    M("blend_calibrated_offset", "annojax/blend.py",
      "shift = rest * c + wc * (ca * c + cc)", "shift = rest * c + wc * cc",
      "the calibrated rule's share of the consensus offset is dropped",
      ("tests/test_blend.py",)),
    M("diagnostic_two_sided", "annojax/protocol/diagnostic.py",
      "one = (two / 2 if diff > 0 else 1 - two / 2) if np.isfinite(two) \\",
      "one = two if np.isfinite(two) \\",
      "the oracle-vs-chance test two-sided (a head below chance would count "
      "as telling them apart)", ("tests/test_blend.py",)),
    M("enroll_blended_rule_ignored", "annojax/predict.py",
      '  if mapping.get("rule") != "blended":\n    return None',
      "  return None",
      "predict serves a blended mapping with its top-1 heads",
      ("tests/test_export.py",)),
    M("lowrank_map_no_prior", "annojax/rater_embeddings.py",
      'gram = jnp.einsum("nkdr,nkds->nrs", phi, phi) / noise + precision',
      'gram = jnp.einsum("nkdr,nkds->nrs", phi, phi) / noise',
      "the low-rank closed form leaves the prior's precision out of the "
      "normal equations", ("tests/test_rater_embeddings.py",)),
    M("embedding_fit_no_prior", "annojax/rater_embeddings.py",
      "  return fit + 0.5 * jnp.einsum", "  return fit + 0 * jnp.einsum",
      "the gradient fit maximises the likelihood, not the posterior",
      ("tests/test_rater_embeddings.py",)),
    M("copy_scores_ignore_mask", "annojax/rater_embeddings.py",
      "  m = mask[:, None, :, None]",
      "  m = jnp.ones_like(mask)[:, None, :, None]",
      "the embedding copy scores padded enrollment slots as clips",
      ("tests/test_rater_embeddings.py",)),
    M("shared_heads_frozen", "annojax/head_optim.py",
      "    shared = optax.apply_updates(shared, updates)", "    pass",
      "row-sparse training never updates the families' shared decoder",
      ("tests/test_head_optim.py",)),
    M("mean_listener_untrained", "annojax/models.py",
      '  if not hasattr(heads, "mean_listener_output"):', "  if True:",
      "the embedding families' mean listener is never trained",
      ("tests/test_rater_embeddings.py",)),
    M("family_rows_unfiltered", "annojax/protocol/rows.py",
      "has = lambda r: models is None or r.model in models",
      "has = lambda r: True",
      "rows run whether or not the workdir has their model",
      ("tests/test_protocol_rows.py",)),
    M("rows_selection_ignored", "annojax/protocol/rows.py",
      'wanted = set(names) | {"aggregate"}', "wanted = set(REGISTRY)",
      "config.eval.rows is ignored: every registered row runs",
      ("tests/test_protocol_rows.py",)),
    M("legend_without_docs", "annojax/protocol/tables.py",
      'return lines + [f"- {k}: {rows_lib.REGISTRY[k].doc}" for k in kinds]',
      "return lines",
      "results.md's legend leaves out what each registered row is",
      ("tests/test_protocol_rows.py",)),
    M("loo_includes_self", "annojax/label_stats.py",
      "loo = (sums[g] - np.where(have, v, 0.0)) / np.maximum(others, 1)",
      "loo = sums[g] / np.maximum(counts[g], 1)",
      "the leave-one-out consensus includes the rater's own rating",
      ("tests/test_metrics.py",)),
    M("agreement_min_ratings_strict", "annojax/label_stats.py",
      "keep = np.isin(ann, ids[counts >= min_ratings])",
      "keep = np.isin(ann, ids[counts > min_ratings])",
      "label statistics leave out annotators with exactly min_ratings",
      ("tests/test_metrics.py",)),
    M("agreement_median_is_mean", "annojax/label_stats.py",
      "\"ccc_median\": float(np.median(ccc[:, 0])),",
      "\"ccc_median\": float(np.mean(ccc[:, 0])),",
      "the agreement's median CCC is a mean", ("tests/test_metrics.py",)),
    M("best_peer_min_common_strict", "annojax/label_stats.py",
      "cand = np.flatnonzero(n >= min_common)",
      "cand = np.flatnonzero(n > min_common)",
      "peers sharing exactly min_common clips are not peers",
      ("tests/test_metrics.py",)),
    M("kde_untruncated", "annojax/distributions.py",
      "m = _mass(edges[:-1], edges[1:], mu, s) / jnp.exp(_log_z(mu, s))",
      "m = _mass(edges[:-1], edges[1:], mu, s)",
      "rating distributions' kernels not renormalised to the scale (mass "
      "beyond the ends lost)", ("tests/test_distributions.py",)),
    M("kde_weights_unnormalised", "annojax/distributions.py",
      "weights = weights / weights.sum(1, keepdims=True)", "",
      "a mixture's weights are not normalised to sum to 1",
      ("tests/test_distributions.py",)),
    M("sd_ddof0", "annojax/distributions.py",
      "var = (s2 - s1 ** 2 / n[:, None]) / (n[:, None] - 1)",
      "var = (s2 - s1 ** 2 / n[:, None]) / n[:, None]",
      "a clip's actual rating s.d. with divisor n, not n - 1",
      ("tests/test_distributions.py",)),
    M("coverage_90_is_50", "annojax/distributions.py",
      'INTERVALS = {"coverage_50": (0.25, 0.75), "coverage_90": (0.05, 0.95)}',
      'INTERVALS = {"coverage_50": (0.25, 0.75), "coverage_90": (0.25, 0.75)}',
      "the 90% interval is the 50% one", ("tests/test_distributions.py",)),
    M("jsd_nats", "annojax/distributions.py",
      "a * np.log2(a / np.where(m > 0, m, 1))",
      "a * np.log(a / np.where(m > 0, m, 1))",
      "Jensen-Shannon divergence in nats, not bits",
      ("tests/test_distributions.py",)),
    M("likert_level_off_by_one", "annojax/distributions.py",
      "p[local[:, None], d, level[rows]], FLOOR))",
      "p[local[:, None], d, np.minimum(level[rows] + 1, len(scale.levels) - 1)], FLOOR))",
      "a Likert rating scored by the next level's probability",
      ("tests/test_distributions.py",)),
    M("kde_weights_uniform", "annojax/distributions.py",
      '  if kind == "uniform":', "  if True:",
      "the KDE's activity weights are uniform",
      ("tests/test_distributions.py", "tests/test_export.py")),
    M("shrink_ignored", "annojax/distributions.py",
      "return mean + shrink * (pred - mean)", "return pred",
      "the heads' shrink toward their mean is not applied",
      ("tests/test_export.py",)),
    M("global_sd_about_consensus", "annojax/protocol/rating_distributions.py",
      "sd = dist.residual_sd(t.pair_clip, t.pair_values, d.train_aggregate)",
      "sd = dist.residual_sd(t.pair_clip, t.pair_values, t.consensus)",
      "aggregate_sd's s.d. about the clips' mean rating, not about the "
      "consensus model's prediction", ("tests/test_evaluate.py",)),
    M("distribution_clips_strict", "annojax/protocol/rating_distributions.py",
      "clips = np.flatnonzero(n >= min_ratings)",
      "clips = np.flatnonzero(n > min_ratings)",
      "clips with exactly min_ratings ratings left out of the distribution "
      "table", ("tests/test_distributions.py",)),
    M("block_remainder_dropped", "annojax/train.py",
      "  if group:\n    yield group", "  if False:\n    yield group",
      "steps_per_call > 1 drops the epoch's last, shorter block of batches",
      ("tests/test_train.py",)),
    M("score_always_bfloat16", "annojax/enroll.py",
      'low=precision == "bfloat16")', "low=True)",
      "the search's matmuls always run in bfloat16",
      ("tests/test_enroll.py",)),
    M("cpu_chunk_uncapped", "annojax/enroll.py",
      "head_chunk = (CPU_HEAD_CHUNK if jax.default_backend() == \"cpu\"",
      "head_chunk = (a if jax.default_backend() == \"cpu\"",
      "auto-sized chunks ignore the CPU's cap (CPU figures change)",
      ("tests/test_enroll.py",)),
    M("groupnorm_over_padding", "annojax/encoders/wav2vec2.py",
      "valid = frame_mask(n, x.shape[1])",
      "valid = jnp.ones(x.shape[:2], bool)",
      "the front end's GroupNorm takes statistics over the padding too "
      "(transformers' padded batches)", ("tests/test_encoders.py",)),
    M("padded_keys_attended", "annojax/encoders/wav2vec2.py",
      "scores = jnp.where(key_valid[:, None, None, :], scores, -jnp.inf)",
      "scores = scores",
      "attention attends to padded frames", ("tests/test_encoders.py",)),
    M("wavlm_gate_const_ignored", "annojax/encoders/wav2vec2.py",
      "(g[..., 1] * self.gate_const[...] - 1.0)", "(g[..., 1] - 1.0)",
      "WavLM's gate ignores its learned constant", ("tests/test_encoders.py",)),
    M("weight_norm_wrong_axis", "annojax/encoders/wav2vec2.py",
      ".sum(\n          (0, 1), keepdims=True)", ".sum(\n          (1, 2), keepdims=True)",
      "the position convolution's weight norm over the wrong axes", ("tests/test_encoders.py",)),
    M("gelu_tanh", "annojax/encoders/wav2vec2.py",
      "jax.nn.gelu(x, approximate=False)", "jax.nn.gelu(x, approximate=True)",
      "tanh-approximated GELU instead of torch's exact one", ("tests/test_encoders.py",)),
    M("stable_final_norm_missing", "annojax/encoders/wav2vec2.py",
      "last = self.norm(x) if self.cfg.do_stable_layer_norm else x",
      "last = x",
      "pre-LN models' last hidden state without the final LayerNorm", ("tests/test_encoders.py",)),
    M("bucket_direction", "annojax/encoders/wav2vec2.py",
      "out = (rel > 0).astype(np.int64) * half",
      "out = (rel < 0).astype(np.int64) * half",
      "WavLM's relative positions read backwards (key before query)",
      ("tests/test_encoders.py",)),
    M("layer_mean_skips_input", "annojax/encoders/extract.py",
      "jnp.stack([s.astype(jnp.float32) for s in states])",
      "jnp.stack([s.astype(jnp.float32) for s in states[1:]])",
      "layer=mean leaves out the Transformer's input (hidden_states[0])",
      ("tests/test_encoders.py",)),
    M("long_audio_whole", "annojax/encoders/extract.py",
      "k = max(1, math.ceil(n / self.chunk))", "k = 1",
      "clips longer than chunk_seconds encoded whole",
      ("tests/test_encoders.py",)),
    M("do_normalize_ignored", "annojax/encoders/extract.py",
      "if self.cfg.do_normalize:", "if False:",
      "preprocessor_config.json's do_normalize ignored", ("tests/test_encoders.py",)),
    M("no_resampling", "annojax/features.py",
      "encoder.prepare(audio.load_audio(p, rate)[0])",
      "encoder.prepare(audio.load_audio(p, None)[0])",
      "audio at another rate fed to the encoder unresampled", ("tests/test_encoders.py",)),
    M("bf16_bits", "annojax/encoders/checkpoint.py",
      "astype(np.uint32) << 16", "astype(np.uint32) << 15",
      "bfloat16 tensors widened wrong", ("tests/test_encoders.py",)),
]


def _files() -> list[str]:
  out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], cwd=ROOT, check=True,
                       capture_output=True).stdout.decode().split("\0")
  return [f for f in out if f and os.path.isfile(os.path.join(ROOT, f))]


def _copy(dst: str):
  for f in _files():
    os.makedirs(os.path.dirname(os.path.join(dst, f)) or dst, exist_ok=True)
    shutil.copy2(os.path.join(ROOT, f), os.path.join(dst, f))
  shared = os.path.join(os.path.dirname(ROOT), "shared")
  if os.path.isdir(shared):  # tests find ../shared beside the checkout
    os.symlink(shared, os.path.join(os.path.dirname(dst), "shared"))


def run_one(m: Mutant, full: bool, timeout: int) -> tuple[str, float, str]:
  with tempfile.TemporaryDirectory() as tmp:
    repo = os.path.join(tmp, "repo")
    _copy(repo)
    path = os.path.join(repo, m.path)
    text = open(path).read()
    if text.count(m.find) != 1:
      return "stale", 0.0, (f"{m.path}: the snippet occurs "
                            f"{text.count(m.find)} times")
    with open(path, "w") as f:
      f.write(text.replace(m.find, m.replace))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p",
           "no:cacheprovider", *(["tests"] if full else m.tests)]
    t0 = time.time()
    try:
      p = subprocess.run(cmd, cwd=repo, capture_output=True, text=True,
                         timeout=timeout)
    except subprocess.TimeoutExpired:
      return "timeout", time.time() - t0, ""
    tail = [l for l in p.stdout.splitlines() if l.startswith(("FAILED",
                                                              "ERROR"))]
    status = "survived" if p.returncode == 0 else "killed"
    return status, time.time() - t0, tail[0][:160] if tail else ""


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
  ap.add_argument("--full", action="store_true",
                  help="run the whole suite per mutant")
  ap.add_argument("--list", action="store_true")
  ap.add_argument("--timeout", type=int, default=1800)
  ap.add_argument("--out", default="")
  a = ap.parse_args()
  chosen = [m for m in MUTANTS if not a.names or m.name in a.names]
  unknown = set(a.names) - {m.name for m in MUTANTS}
  if unknown:
    sys.exit(f"unknown mutant(s) {sorted(unknown)}")
  if a.list:  # also checks that every snippet is still there, once
    for m in chosen:
      n = open(os.path.join(ROOT, m.path)).read().count(m.find)
      print(f"{m.name:28s} {m.path:30s} {'' if n == 1 else 'STALE '}"
            f"{m.what}")
    return
  lines = ["| mutant | bug | tests run | result | s | first failure |",
           "|---|---|---|---|---|---|"]
  survived = 0
  for m in chosen:
    status, secs, fail = run_one(m, a.full, a.timeout)
    survived += status != "killed"
    lines.append(f"| {m.name} | {m.what} | "
                 f"{'all' if a.full else ', '.join(m.tests)} | **{status}** | "
                 f"{secs:.0f} | {fail.replace('|', '/')} |")
    print(lines[-1], flush=True)
  killed = len(chosen) - survived
  lines.append("")
  lines.append(f"{killed} of {len(chosen)} mutants killed"
               f"{'' if a.full else ' (each by its own test files)'}.")
  print(lines[-1])
  if a.out:
    with open(a.out, "w") as f:
      f.write("\n".join(lines) + "\n")
  sys.exit(1 if survived else 0)


if __name__ == "__main__":
  main()
