"""The NSC partitions bench/nsc.sh trains, for the scripts that read them.

Imported as `nsc_runs` by scripts run as `python bench/<script>.py` (their
folder is on the import path) after they put the repository root there.
"""

import json
import os

from annojax.data import prepare
from configs import nsc


def partitions(workdirs):
  """(config, workdir, prepared) of each NSC partition trained by
  bench/nsc.sh, its partition seed read from the run's config.json."""
  for workdir in workdirs:
    with open(os.path.join(workdir, "config.json")) as f:
      part = json.load(f)["data"]["partition_seed"]
    config = nsc.get_config()
    config.data.partition_seed = part
    yield config, workdir, prepare.prepare(config, workdir)
