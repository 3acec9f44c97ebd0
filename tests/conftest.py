"""Shared fixtures: the tiny config and one trained tiny workdir per session."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from configs import tiny  # pylint: disable=g-import-not-at-top


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: takes more than a few seconds (a model trained or a "
      "command run in a subprocess); the quick tier is -m 'not slow'")


@pytest.fixture
def tiny_config():
  return tiny.get_config()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
  """Prepares and trains both tiny models once: (config, workdir, prepared)."""
  from annojax import jobs  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.mode = "train"
  workdir = str(tmp_path_factory.mktemp("trained_tiny"))
  out = jobs.run(config, workdir)
  return config, workdir, out["prepared"]


SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def pytest_terminal_summary(terminalreporter):
  """One line: how many tests skipped for lack of ../shared (the real data
  and release formats beside the checkout; README, "What ../shared is")."""
  skipped = terminalreporter.stats.get("skipped", [])
  n = sum("../shared" in str(getattr(r, "longrepr", "")) for r in skipped)
  where = ("present" if os.path.isdir(SHARED) else "absent")
  terminalreporter.write_line(
      f"../shared ({SHARED}) {where}: {n} test(s) skipped for lack of its "
      "data.")
