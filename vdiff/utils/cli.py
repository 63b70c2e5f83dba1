"""What train.py and sample.py share: turning start-up failures into one sentence and exit status 2,
and faults during training (`RunFault`) into one sentence and exit status 3."""

import functools
import logging
import sys

from vdiff.utils.config import ConfigError, RunFault

log = logging.getLogger("vdiff")


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except RunFault as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(3)

    return wrapper
