"""What train.py and sample.py share: turning start-up failures into one sentence and exit status 2,
and faults during training (`RunFault`) into one sentence and exit status 3.

The terminal gets the sentence on stderr. A fault during training and an uncaught error also go to the
run's log (<run dir>/train.log, through the file-only `vdiff.errors` logger of
configs/hydra/job_logging/vdiff.yaml); an uncaught error is then raised on for Hydra to report as usual.
A start-up failure (`ConfigError`) is not logged there: it leaves the run dir as it was."""

import functools
import logging
import sys

from vdiff.utils.config import ConfigError, RunFault

log = logging.getLogger("vdiff")
errors = logging.getLogger("vdiff.errors")


def _to_run_log(message: str, exc_info: bool = False) -> None:
    if errors.handlers:  # configured once Hydra's job logging is set up; not in Hydra callbacks before it
        errors.error(message, exc_info=exc_info)


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
            _to_run_log(f"error: {e}")
            sys.exit(3)
        except Exception as e:
            _to_run_log(f"error: {type(e).__name__}: {e}", exc_info=True)
            raise

    return wrapper
