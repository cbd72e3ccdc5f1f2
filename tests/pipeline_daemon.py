"""``python -m tests.pipeline_daemon MODULE:NAME run --config FILE [--until-idle]``: the real
daemon, with a test pipeline (a tuple of StageSpec named MODULE:NAME, e.g. the paced stage's
``tests.paced_stage:PACED_PIPELINE``) in place of the real one."""

from __future__ import annotations

import importlib
import sys

from daemon.cli import build_parser
from daemon.config import check_folders, load_settings
from daemon.journal import setup_logging
from daemon.service import Daemon, install_signal_handlers


def main() -> int:
    module, _, name = sys.argv[1].partition(":")
    pipeline = getattr(importlib.import_module(module), name)
    args = build_parser().parse_args(sys.argv[2:])
    settings = load_settings(args.config, {"host_name": args.host_name})
    check_folders(settings)
    setup_logging(settings.log_level)
    daemon = Daemon(settings, pipeline=pipeline)
    install_signal_handlers(daemon)
    return daemon.run(until_idle=args.until_idle)


if __name__ == "__main__":
    sys.exit(main())
