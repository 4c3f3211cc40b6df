"""Fail-stop: the one way a node process stops itself when going on would be unsafe.

A replica whose storage refused a write (apply, journal entry, term/vote record) has Raft state
in memory that is not on disk; answering from it could acknowledge what a restart forgets, or
vote twice in one term. A thread that dies instead leaves a process that looks alive and serves
nothing. Exiting non-zero hands the node to its supervisor (Kubernetes ``restartPolicy``, the
local cluster, the chaos harness), whose restart replays the journal from disk.
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn

log = logging.getLogger(__name__)

EXIT_CODE = 70  # EX_SOFTWARE


def fail_stop(logger: logging.Logger, message: str, *args: object) -> NoReturn:
    """Log ``message`` with the current exception's traceback, flush the logs, exit at once.

    ``os._exit`` on purpose: no atexit hooks or ``finally`` blocks that could still write
    through the broken state, and no waiting on threads that may hold it.
    """
    logger.critical(message + "; stopping the process (exit %d)", *args, EXIT_CODE, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_CODE)
