"""Starting a local Ray cluster, once more if its first start times out.

On a busy machine a local node's raylet can miss its start-up deadline ("The current node timed out
during startup"), and Ray then raises a plain ``Exception`` with nothing started. Seen on a loaded
2-core machine in one run of four; a second start, after ``ray.shutdown()``, is an ordinary start.
A cluster at an address is never retried here: its failure is the user's to see.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

#: how Ray words a local node that did not come up in time
STARTUP_TIMEOUT = "timed out during startup"


def init_local(**options: Any) -> None:
    """``ray.init(**options)`` for a local cluster, started a second time if the first start timed out."""
    import ray

    try:
        ray.init(**options)
    except Exception as error:  # Ray raises a bare Exception for this
        if STARTUP_TIMEOUT not in str(error):
            raise
        logger.warning("the local Ray cluster did not start in time; starting it once more")
        ray.shutdown()
        ray.init(**options)
