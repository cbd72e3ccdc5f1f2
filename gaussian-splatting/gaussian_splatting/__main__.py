"""``python -m gaussian_splatting``: the trainer's entry point.

OMP_WAIT_POLICY=PASSIVE must be in the environment before PyTorch loads its OpenMP runtime:
numba's and PyTorch's thread pools otherwise spin against each other on busy machines (see the
README). The package's __init__ has already imported PyTorch by the time this runs, so when the
variable is unset the interpreter restarts itself once with it set (about two seconds); callers
such as the daemon can set it themselves and skip that.
"""

import os
import sys

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.execv(sys.executable, [sys.executable, "-m", "gaussian_splatting", *sys.argv[1:]])

from gaussian_splatting.cli import main  # noqa: E402  (only once the environment is right)

sys.exit(main())
