"""``python -m gaussian_splatting``: the trainer's entry point (the package's __init__ has set
OMP_WAIT_POLICY before PyTorch loaded)."""

import sys

from gaussian_splatting.cli import main

sys.exit(main())
