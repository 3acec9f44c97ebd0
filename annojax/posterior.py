"""Enrollment beyond the top-1 head: a posterior mixture and an empirical-
Bayes head, for all N new annotators in one batched, jit-compiled call each.

A head is linear in the trunk features: pred_d = z_d . w_d + b_d. Write
x = [z_d, 1] and theta_d = [w_d, b_d] (H + 1 numbers per dimension).

Mixture (`mixture_heads`): weights over the A pre-trained heads =
softmax(k x score / temperature), score = the enrollment score
(enroll.score_heads, a per-clip average such as CCC) and k = the
annotator's number of enrollment clips, so the posterior sharpens as
evidence accumulates, as a likelihood (a sum over clips) would. The new
annotator's head is the weighted mean of the heads (heads are linear, so
this is the weighted mean of their predictions). temperature -> 0 is the
top-1 copy; large temperatures give the mean of all heads.

Empirical Bayes (`fit_prior`, `eb_heads`): a Gaussian prior over theta_d
fitted to all pre-trained heads, mean mu_d and covariance
Sigma_d = U_d U_d^T + s2_d I (the top `rank` principal directions of the
heads plus isotropic rest), and ratings y = x . theta + noise with variance
`noise`. The new annotator's MAP head given their k enrollment clips X:

  theta = mu + Sigma X^T (X Sigma X^T + noise I_k)^-1 (y - X mu)

(the k x k "dual" form: cheap for k <= a few hundred clips). With no clips
it is the prior mean (the population head); with many it approaches the
annotator's own least-squares fit. Masked (padding) clips have X = 0 and
residual 0, so they change nothing.

`tune` works on SOURCE held-out annotators (pre-training annotators rated
on the source's validation and test clips, which no model trained on),
never on the target: the EB noise is the mean squared residual of those
ratings around the annotator's own head (rating noise plus the head's own
estimation error, so it errs toward shrinkage), and the mixture temperature
is the one with the highest mean CCC_ind when each annotator's held-out
ratings are split into enrollment and test halves (their own head
excluded from the candidates).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from annojax import enroll
from annojax import metrics


@dataclasses.dataclass(frozen=True)
class Prior:
  """Gaussian prior over heads, per dimension: mean [D, H+1], low-rank
  factor [D, H+1, r] and isotropic rest [D]."""
  mean: np.ndarray
  factor: np.ndarray
  rest: np.ndarray


def fit_prior(kernel, bias, rank: int = 16) -> Prior:
  """The heads' mean and top-`rank` covariance (+ the rest, isotropic).

  kernel [A, D, H], bias [A, D] -> Prior. Uses the (H+1) x (H+1)
  covariance per dimension, so A can be large."""
  theta = np.concatenate([np.asarray(kernel, np.float64),
                          np.asarray(bias, np.float64)[..., None]], -1)
  a, d, p = theta.shape
  mean = theta.mean(0)
  c = theta - mean
  factors, rests = [], []
  r = int(max(0, min(rank, p, a - 1)))
  for j in range(d):
    cov = c[:, j].T @ c[:, j] / max(a, 1)
    val, vec = np.linalg.eigh(cov)  # ascending
    val = np.maximum(val, 0.0)
    top = val[::-1][:r]
    rest = float(val[::-1][r:].sum() / max(p - r, 1))
    factors.append(vec[:, ::-1][:, :r] * np.sqrt(np.maximum(top - rest,
                                                            0.0)))
    rests.append(rest)
  return Prior(mean=mean.astype(np.float32),
               factor=np.stack(factors).astype(np.float32),
               rest=np.asarray(rests, np.float32))


@jax.jit
def _eb(z, y, mask, mean, factor, rest, noise):
  """z [N, K, D, H], y [N, K, D], mask [N, K] -> theta [N, D, H+1]."""
  ones = jnp.ones(z.shape[:-1] + (1,), z.dtype)
  x = jnp.concatenate([z, ones], -1) * mask[..., None, None]  # [N,K,D,P]
  x = jnp.moveaxis(x, 2, 1)                                    # [N,D,K,P]
  resid = (jnp.moveaxis(y, 2, 1) - jnp.einsum("ndkp,dp->ndk", x, mean)
           ) * mask[:, None]                                   # [N,D,K]
  xu = jnp.einsum("ndkp,dpr->ndkr", x, factor)                 # [N,D,K,r]
  gram = (jnp.einsum("ndkr,ndlr->ndkl", xu, xu) + rest[None, :, None, None]
          * jnp.einsum("ndkp,ndlp->ndkl", x, x))
  k = gram.shape[-1]
  gram = gram + noise * jnp.eye(k)
  alpha = jnp.linalg.solve(gram, resid[..., None])[..., 0]     # [N,D,K]
  # Sigma X^T alpha = U (X U)^T alpha + rest X^T alpha
  return (mean[None] + jnp.einsum("dpr,ndkr,ndk->ndp", factor, xu, alpha)
          + rest[None, :, None] * jnp.einsum("ndkp,ndk->ndp", x, alpha))


def eb_heads(z, ratings, mask, prior: Prior, noise: float
             ) -> tuple[np.ndarray, np.ndarray]:
  """MAP heads of N new annotators: kernel [N, D, H], bias [N, D].

  z [N, K, D, H] trunk features of the enrollment clips, ratings [N, K, D],
  mask [N, K]; noise = rating noise variance (on [-1, 1])."""
  n = len(ratings)
  z, ratings, mask = enroll.pad_to_buckets(z, ratings, mask)
  theta = np.asarray(_eb(jnp.asarray(z), jnp.asarray(ratings),
                         jnp.asarray(mask), jnp.asarray(prior.mean),
                         jnp.asarray(prior.factor), jnp.asarray(prior.rest),
                         jnp.float32(noise)))[:n]
  return theta[..., :-1], theta[..., -1]


@jax.jit
def mixture_weights(scores, counts, temperature):
  """[N, A] posterior over heads: softmax(counts x scores / T); an
  annotator with no clips yet (count 0) gets uniform weights. The mixture
  rule's weights, and the heads in contention for adaptive.py."""
  return jax.nn.softmax(scores * counts[:, None] / temperature, axis=-1)


@jax.jit
def _mix(scores, counts, kernel, bias, temperature):
  w = mixture_weights(scores, counts, temperature)
  return (jnp.einsum("na,adh->ndh", w, kernel),
          jnp.einsum("na,ad->nd", w, bias))


def mixture_heads(scores, counts, kernel, bias, temperature: float
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The posterior-weighted mean head of each new annotator: softmax over
  heads of scores [N, A] x counts [N] (enrollment clips) / temperature ->
  kernel [N, D, H], bias [N, D]. Scores of -inf exclude a head."""
  k, b = _mix(jnp.asarray(scores, jnp.float32),
              jnp.asarray(counts, jnp.float32), jnp.asarray(kernel),
              jnp.asarray(bias), jnp.float32(temperature))
  return np.asarray(k), np.asarray(b)


def predictions(z, kernel, bias):
  """z [N, T, D, H] with per-annotator heads kernel [N, D, H], bias [N, D]
  -> [N, T, D]."""
  return np.einsum("ntdh,ndh->ntd", z, kernel) + bias[:, None]


@dataclasses.dataclass(frozen=True)
class Tuned:
  temperature: float
  noise: float
  temperature_scores: dict
  annotators: int


def own_head_noise(z_clips, pair_clip, pair_annotator, pair_values, kernel,
                   bias) -> float:
  """Mean squared residual of held-out ratings around the rater's own head
  (pair_annotator = head index), averaged over dimensions."""
  pred = np.einsum("pdh,pdh->pd", z_clips[pair_clip],
                   kernel[pair_annotator]) + bias[pair_annotator]
  return float(np.mean((pair_values - pred) ** 2))


def tune(z_clips, pair_clip, pair_annotator, pair_values, kernel, bias,
         temperatures, noise: float = 0.0, seed: int = 0,
         score: str = "ccc", head_chunk: int = 0,
         min_clips: int = 4) -> Tuned:
  """Source held-out annotators -> the EB noise (`noise` if > 0, else
  own_head_noise) and the mixture temperature: each annotator with >=
  min_clips held-out ratings is split at random into enrollment and test
  halves; the temperature with the highest mean CCC_ind on the test halves
  wins. The annotator's own head (index = pair_annotator) is excluded from
  the mixture's candidates."""
  rng = np.random.default_rng([seed, 0x7E1])
  order = np.argsort(pair_annotator, kind="stable")
  ann_sorted = pair_annotator[order]
  ids, starts, counts = np.unique(ann_sorted, return_index=True,
                                  return_counts=True)
  keep = counts >= min_clips
  enr, tst, who = [], [], []
  for a, s, c in zip(ids[keep], starts[keep], counts[keep]):
    rows = rng.permutation(order[s:s + c])
    h = c // 2
    enr.append(rows[:h])
    tst.append(rows[h:])
    who.append(int(a))
  if not who:
    raise ValueError(f"no source validation annotator has >= {min_clips} "
                     "ratings: cannot tune the mixture temperature / EB noise")
  who = np.asarray(who)
  scores, _, _, me = enroll.enrollment_scores(
      z_clips, [pair_clip[r] for r in enr], [pair_values[r] for r in enr],
      kernel, bias, score=score, head_chunk=head_chunk)
  scores = np.array(scores)
  ct, yt, mt = enroll.pack([pair_clip[r] for r in tst],
                           [pair_values[r] for r in tst])
  zt = z_clips[ct]
  scores[np.arange(len(who)), who] = -np.inf  # not their own head

  def ccc(kn, bn):
    pred = predictions(zt, kn, bn)
    sel = mt > 0
    ann = np.broadcast_to(np.arange(len(who))[:, None], mt.shape)[sel]
    return float(np.nanmean(metrics.ccc_ind(pred[sel], yt[sel], ann)))

  t_scores = {float(t): ccc(*mixture_heads(scores, me.sum(1), kernel, bias,
                                            t))
              for t in temperatures}
  if noise <= 0:
    noise = own_head_noise(z_clips, pair_clip, pair_annotator, pair_values,
                           kernel, bias)
  return Tuned(temperature=max(t_scores, key=t_scores.get),
               noise=float(noise), temperature_scores=t_scores,
               annotators=len(who))
