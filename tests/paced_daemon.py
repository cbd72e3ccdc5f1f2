"""``python -m tests.paced_daemon run --config FILE [--until-idle]``: the real daemon, with
the paced test stage after ingest."""

from __future__ import annotations

import sys

from daemon.cli import build_parser
from daemon.config import check_folders, load_settings
from daemon.journal import setup_logging
from daemon.service import Daemon, install_signal_handlers
from tests.paced_stage import PACED_PIPELINE


def main() -> int:
    args = build_parser().parse_args(sys.argv[1:])
    settings = load_settings(args.config)
    check_folders(settings)
    setup_logging(settings.log_level)
    daemon = Daemon(settings, pipeline=PACED_PIPELINE)
    install_signal_handlers(daemon)
    return daemon.run(until_idle=args.until_idle)


if __name__ == "__main__":
    sys.exit(main())
