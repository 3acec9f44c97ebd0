"""Reference settings of the method (../shared/METHOD.md), synthetic corpus.

python -m annojax.main --config=configs/default.py --workdir=/tmp/annojax
"""

import ml_collections

from annojax.corpora import synthetic


def get_config():
  config = ml_collections.ConfigDict()
  # all = prepare -> train individual + aggregate -> evaluate -> export. Or
  # one of prepare, train, evaluate, export; or enroll / predict, which need
  # only an exported bundle (see config.predict).
  config.mode = "all"

  config.data = ml_collections.ConfigDict()
  # "synthetic" (embedded default) or "files": a reader of
  # annojax/corpora/readers.py (generic, msp_podcast, iemocap, msp_improv,
  # muse, crema_d) over `path` + an embedding file (.npz: clip_ids,
  # embeddings; see --mode=features). `dims`: the dimensions both corpora
  # use; a corpus's own dims override them (one corpus's own apply to the
  # other too where it sets none). `scale` (generic reader): (low, high)
  # the ratings were given on; empty = read from the ratings' smallest and
  # largest values, with a warning naming them. Declare it.
  config.data.corpus = "synthetic"
  config.data.synthetic = synthetic.default_config()
  config.data.files = ml_collections.ConfigDict(dict(
      dims=("activation", "valence"),
      source=dict(name="source", reader="generic", path="", embeddings="",
                  dims=(), scale=(), options={}),
      target=dict(name="target", reader="generic", path="", embeddings="",
                  dims=(), scale=(), options={})))
  # Where TFDS datasets go; empty = <workdir>/data.
  config.data.data_dir = ""
  # Pre-training keeps annotators with at least this many ratings.
  config.data.min_ratings = 30
  # Fractions of source speakers held out for validation and test.
  config.data.val_fraction = 0.1
  config.data.test_fraction = 0.1
  config.data.split_seed = 0
  # Label layout of the individual model's batches: "sparse" computes only the
  # heads that rated each clip, "dense" all heads then masks; "auto" takes
  # dense below 256 heads, sparse above (measured: bench/README.md).
  config.data.layout = "auto"
  # Keep the decoded training split in memory after the first epoch.
  config.data.cache = True
  # Epoch order: records (blocks of 128 clips) in random order, shuffled
  # clip by clip within windows of this many clips; at least the training
  # split's size = one uniform permutation. Without the cache, one window
  # of decoded clips is what the reader holds in memory.
  config.data.shuffle_window = 65536
  # Standardise embeddings (x - mean) / s.d. with the source training
  # split's statistics (stored with the datasets and the export bundle).
  # Features on very different scales (openSMILE: F0 ~40, jitter ~0.01)
  # otherwise train a model that predicts a constant.
  config.data.standardize = True
  # ... and limit the standardised values to +-feature_clip s.d.s (0: no
  # limit). A feature nearly constant on the pre-training speakers can put
  # a new speaker's clip hundreds of s.d.s out (NSC eGeMAPS: up to 486),
  # and the model's predictions for it with it. Clipped values are logged.
  config.data.feature_clip = 5.0
  # Prepare fails when the target shares clips, speakers or annotators with
  # the pre-training data (its test material would not be unseen). List the
  # kinds to allow anyway, e.g. ("annotators",); results then say so.
  config.data.allow_overlap = ()

  config.model = ml_collections.ConfigDict()
  config.model.hidden = 256
  config.model.dropout = 0.2
  # Heads that share strength: each step adds head_shrinkage x the mean
  # squared distance of the batch's rated heads from the mean head (0 = the
  # paper's independent heads). Needs the dense head update (auto picks it).
  config.model.head_shrinkage = 0.0
  # How annotators are modelled (annojax/models.py): "heads" (the paper's:
  # one free linear head each), "lowrank" (linear heads mean + U e_a) or
  # "embedding" (an embedding e_a per annotator conditioning one shared
  # nonlinear decoder on the trunk's features: LDNet / user-token style).
  # embedding_dim: r, the size of e_a; decoder_hidden: the decoder's units.
  # Other families can be trained beside the individual model for the
  # protocol's comparison: add their names to config.train.models.
  config.model.annotators = "heads"
  config.model.embedding_dim = 16
  config.model.decoder_hidden = 64

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "sgd"  # sgd (momentum) or adam
  config.optim.learning_rate = 1e-3
  config.optim.momentum = 0.9
  # Update of the annotator heads: "dense" (optax over every head each
  # step), "sparse" (only the heads the batch rated: a step's cost does not
  # grow with the number of heads; exact for SGD, lazy for Adam; see
  # annojax/head_optim.py) or "auto" (sparse where exact and faster: SGD on
  # the sparse label layout, more heads than batch_size x raters per clip).
  config.optim.head_update = "auto"
  # Reduce-on-plateau: lr *= factor after `plateau_patience` epochs without
  # validation improvement; stop after `early_stop_patience`.
  config.optim.plateau_patience = 5
  config.optim.plateau_factor = 0.1
  config.optim.early_stop_patience = 10

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32  # global; divisible by the device count
  config.train.num_epochs = 100
  config.train.loss = "ccc"  # ccc (1 - CCC, summed over dims) or mse
  config.train.seed = 0
  # Which models to train in mode=all/train: "individual" (the family of
  # config.model.annotators), "aggregate", and annotator families to
  # compare beside it ("heads", "lowrank", "embedding": the protocol adds
  # their rows; README "Heads or embeddings?").
  config.train.models = ("individual", "aggregate")
  config.train.progress_bar = True
  # Training steps per dispatch: K > 1 scans the step over blocks of K
  # batches on the device (lax.scan), the same steps and parameters as one
  # step per call; on an accelerator a step then costs what the model
  # costs, not a host round trip (bench/README.md, Training throughput).
  config.train.steps_per_call = 1

  # Multi-process runs: none, auto (SLURM if SLURM_NTASKS > 1), slurm or
  # explicit (coordinator_address, num_processes, process_id).
  config.distributed = ml_collections.ConfigDict(dict(
      mode="none", coordinator_address="", num_processes=1, process_id=0))

  config.eval = ml_collections.ConfigDict()
  config.eval.folds = 5
  # Independent replicates: seed s pre-trains its own individual and
  # aggregate models (seed train.seed + s) and draws its own speaker folds.
  config.eval.seeds = 5
  # Fixed folds instead of a random partition per seed: a regex whose first
  # group names each speaker's fold, e.g. r"^(Ses\d+)" (IEMOCAP sessions).
  config.eval.fold_by = ""
  # Enrollment sizes; 0 means all of the annotator's training-fold clips.
  config.eval.enroll_sizes = (2, 5, 10, 15, 20, 25, 30, 0)
  # Adaptive enrollment rows (annojax/adaptive.py) at these sizes (each also
  # in enroll_sizes, whose random rows they are compared with); () = none.
  config.eval.adaptive_sizes = (2, 5, 10, 15, 20, 30)
  # The protocol's rows by name (annojax/protocol/rows.py, e.g.
  # ('most_similar', 'mixture')); () = every row for the loss. The aggregate,
  # the reference of every test, is always in.
  config.eval.rows = ()
  # Modules to import first, registering rows of your own (README: "Adding a
  # protocol row").
  config.eval.row_modules = ()
  # Similarity score: ccc (sum over dims), pearson or mse.
  config.eval.score = "ccc"
  config.eval.top_k = 1
  config.eval.weighted = False
  # Heads scored per chunk inside the batched search (memory bound); 0 =
  # sized to the device: all heads in one chunk where an accelerator's
  # memory holds them, at most 1,024 on a CPU (annojax/enroll.py).
  config.eval.head_chunk = 0
  # The search's matmuls: "float32", or "bfloat16" inputs accumulated in
  # float32 (accelerators; the CCC statistics stay float32; the effect on
  # the choices: bench/README.md, Enrollment search).
  config.eval.score_precision = "float32"
  # Fine-tuning from the mapped head: head-only Adam steps on the enrollment
  # clips (MSE + an L2 pull toward the mapped head).
  config.eval.finetune_steps = 50
  config.eval.finetune_lr = 1e-2
  config.eval.finetune_l2 = 1.0
  # Ridge strength of the per-annotator linear fit (toward slope 1, offset 0).
  config.eval.linear_ridge = 1.0
  # CCC-consistent calibration of the aggregate (mean/s.d. matching): with
  # n clips, weight n / (n + shrink) on the annotator's statistics.
  config.eval.calibration_shrink = 5.0
  # Enrollment beyond top-1 (annojax/posterior.py), set per seed from the
  # source's held-out annotators (validation + test clips): the posterior
  # mixture's temperature, chosen from these (on the score's scale: sum of
  # per-dimension CCC); the empirical-Bayes head's rating-noise variance
  # (0 = their mean squared residual around their own heads) and prior
  # covariance rank.
  config.eval.mixture_temperatures = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
  config.eval.eb_noise = 0.0
  config.eval.eb_rank = 16
  # The embedding families' fit rule (annojax/rater_embeddings.py): Adam
  # steps (cosine-decayed from this learning rate) from the prior mean for
  # the nonlinear decoder; the low-rank heads' fit is in closed form.
  config.eval.embedding_fit_steps = 300
  config.eval.embedding_fit_lr = 1.0
  # Annotators need this many test ratings to enter CCC_ind.
  config.eval.min_test = 2
  # Rating distributions (annojax/distributions.py; the protocol's
  # distribution rows, protocol/rating_distributions.py): scored on target
  # clips with >= min_ratings ratings. The individual model's KDE weighs
  # each pre-trained annotator by their share of the source's training
  # ratings ("activity": a random rating comes from an active annotator
  # more often) or counts each once ("uniform"); kernel widths (on [-1, 1])
  # and the heads' shrink toward their mean (a head fit to few ratings is
  # partly noise) are chosen from `widths` and `shrinks` by the NLL of the
  # source's held-out ratings (at most tune_clips of its clips). Continuous
  # scales: JSD over `bins` equal bins (Likert scales, up to 21 evenly
  # spaced values: their levels).
  config.eval.distribution = ml_collections.ConfigDict(dict(
      min_ratings=5, weights="activity",
      widths=(0.01, 0.02, 0.04, 0.07, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.35,
              0.4, 0.5, 0.6, 0.8, 1.2),
      shrinks=(0.5, 0.75, 1.0), bins=10, tune_clips=1000, plot_clips=6))

  # --mode=features: audio -> <workdir>/features.npz (or `out`).
  config.features = ml_collections.ConfigDict()
  config.features.audio_dir = ""
  config.features.pattern = "**/*.wav"  # glob under audio_dir
  # Or import a directory of per-clip .npy embeddings (e.g. WavLM) instead.
  config.features.embeddings_dir = ""
  config.features.out = ""
  config.features.sample_rate = 16000
  # librosa (log-mel + MFCC statistics) or opensmile (the eGeMAPS
  # functionals of opensmile_set: eGeMAPSv01a or eGeMAPSv02, 88 each).
  config.features.extractor = "librosa"
  config.features.opensmile_set = "eGeMAPSv01a"
  # Or a self-supervised speech encoder in JAX: extractor = "wavlm",
  # "wav2vec2" or "hubert" with checkpoint = a Hugging Face model directory
  # (config.json + model.safetensors; the paper: microsoft/wavlm-base-plus).
  # layer: "last", "mean" (over every hidden state) or a number (0 = the
  # Transformer's input); pooling over the clip's frames: "mean" or
  # "mean_std"; dtype: float32 or bfloat16. Clips longer than chunk_seconds
  # are encoded in equal pieces (attention within a piece), pooled together;
  # batches hold up to batch_seconds of padded audio.
  config.features.checkpoint = ""
  config.features.layer = "last"
  config.features.pooling = "mean"
  config.features.dtype = "float32"
  config.features.chunk_seconds = 30.0
  config.features.batch_seconds = 32.0
  # Or import openSMILE's CSV output (one row per clip; several files
  # separated by commas) instead of reading audio.
  config.features.opensmile_csv = ""
  config.features.n_mels = 64
  config.features.n_mfcc = 20
  config.features.workers = 2
  config.features.chunk = 64  # clips per resumable part
  # Leave undecodable audio out (listed in <out>.errors.tsv) instead of
  # failing.
  config.features.skip_bad = False

  # --mode=enroll / predict, from an exported bundle alone.
  config.predict = ml_collections.ConfigDict()
  config.predict.bundle = ""  # empty = <workdir>/export
  # Clip embeddings (.npz with clip_ids + embeddings, or .npy dict).
  config.predict.embeddings = ""
  # enroll: long CSV clip, annotator[, speaker], one column per dimension.
  config.predict.ratings = ""
  # Scale the enrollment ratings were given on (and of the *_scaled
  # predictions), e.g. (1.0, 5.0). Empty: the bundle's source corpus scale
  # (enroll logs it and records it in mapping.json; predict reads it there).
  config.predict.scale = ()
  config.predict.score = "ccc"
  # enroll's rule: "blended" (the consensus moved toward the individual
  # rules as far as the annotator's ratings and the source's raters support;
  # annojax/blend.py, learned at export) or "top_k" (the paper's: copy the
  # top_k most similar heads, averaged, `weighted` by score). Bundles
  # without the consensus model (categorical, or exported before format 4)
  # use top_k.
  config.predict.rule = "blended"
  config.predict.top_k = 1
  config.predict.weighted = False
  # enroll: embeddings of candidate clips (as `embeddings`; may be the same
  # file): suggest the next `propose` clips each annotator should rate
  # (<workdir>/enroll/suggestions.csv, adaptive enrollment), also for the
  # comma-separated `annotators` who have no ratings yet. The posterior over
  # heads uses `temperature`; `noise` (rating noise variance on [-1, 1])
  # keeps one round's clips from repeating each other. 0 = the bundle's,
  # tuned at export on the source's held-out raters as the protocol tunes
  # each seed (bundle info "posterior"; 1.0 and 0.1 for older bundles;
  # categorical heads: 1.0, Bayes' rule with the loglik score, and 0.5, a
  # label's variance around class probabilities).
  config.predict.pool = ""
  config.predict.propose = 5
  config.predict.annotators = ""
  config.predict.temperature = 0.0
  config.predict.noise = 0.0
  # predict: the mapping written by enroll; empty = <workdir>/enroll/...
  config.predict.mapping = ""
  # predict: clip predictions to the rating scale ([-1, 1] and
  # config.predict.scale); False writes the heads' raw linear outputs.
  config.predict.clip = True
  # predict: also <workdir>/predict/distributions.csv, each clip's predicted
  # rating distribution (the KDE of every head, as the protocol's heads_kde:
  # mean, s.d. and quantiles 5-95% per dimension).
  config.predict.distribution = False
  return config
