"""A trainer that the kernel's out-of-memory killer stops, and a pipeline to run it in.

``KILLED_TRAINER`` is a ``trainer_command``: it takes the reference trainer's flags, reports its
first iteration, then gets SIGKILL, as a trainer that outgrows the service's MemoryMax= does.
``INGEST_AND_TRAIN`` is the real pipeline's ingest and train stages, for the real daemon through
``tests.pipeline_daemon``: this trainer needs no SfM model, so the test spends no time on one.
"""

from __future__ import annotations

import sys

from stages.registry import PIPELINE

INGEST_AND_TRAIN = tuple(spec for spec in PIPELINE if spec.name in ("ingest", "train"))

_KILLED_AT_ITS_FIRST_ITERATION = """
import json, os, signal, sys
iterations = int(sys.argv[sys.argv.index("--iterations") + 1])
print(json.dumps({"iteration": 1, "iterations": iterations, "loss": 0.5, "gaussians": 100,
                  "iterations_per_second": 10.0}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
KILLED_TRAINER = [sys.executable, "-c", _KILLED_AT_ITS_FIRST_ITERATION]
