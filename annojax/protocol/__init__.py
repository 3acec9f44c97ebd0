"""The cross-corpus evaluation protocol (METHOD.md, Evaluation protocol).

  loop.py              seeds x folds; pooled out-of-fold sets; results.{json,md}
  rows.py              the rows, registered by name (add one there)
  context.py           what a row sees: target, seed, fold, enrollment sets
  folds.py             speaker folds, each run's test pairs and pools
  source.py            what is learnt on the source's held-out raters
  summary.py           metrics per run, mean / std and paired tests
  tables.py            results.md
  adaptive_compare.py  adaptive vs random enrollment clips
  rating_distributions.py  rows predicting each clip's rating distribution
"""
