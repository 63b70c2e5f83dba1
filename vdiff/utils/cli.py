"""What train.py and sample.py share: turning start-up failures into one sentence and exit status 2,
and faults during training (`RunFault`) into one sentence and exit status 3.

The terminal gets the sentence on stderr. A fault during training and an uncaught error also go to the
run's log (<run dir>/train.log, through the file-only `vdiff.errors` logger of
configs/hydra/job_logging/vdiff.yaml); an uncaught error is then raised on for Hydra to report as usual.
A start-up failure (`ConfigError`, or a mandatory `???` value left unset) leaves the run dir as it
found it: the run log holds its records in memory until `start_up_passed()` (`RunLogHandler`), and a run
dir that Hydra created for this command is removed again while it is still empty (`note_run_dir`).

`check_command_line` runs before Hydra composes the config (vdiff/utils/overrides.py): an unknown key or
group option is one sentence with the closest valid names, exit status 2.
"""

import functools
import logging
import os
import sys
from typing import ClassVar

from omegaconf.errors import MissingMandatoryValue

from vdiff.utils.config import ConfigError, RunFault

log = logging.getLogger("vdiff")
errors = logging.getLogger("vdiff.errors")
_new_dirs: set[str] = set()  # run dirs this command is about to create (noted before Hydra makes them)


class RunLogHandler(logging.FileHandler):
    """The run log (<run dir>/train.log, sample.log): records are held in memory until the command's
    start-up checks pass (`start_up_passed()`), then written, and every later record goes straight to
    the file. A command that fails its start-up writes nothing there; the terminal showed it all."""

    _instances: ClassVar[list["RunLogHandler"]] = []

    def __init__(self, filename: str, **kwargs):
        super().__init__(filename, delay=True, **kwargs)
        self._held: list[logging.LogRecord] | None = []
        RunLogHandler._instances.append(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is not None:
            self._held.append(record)
        else:
            super().emit(record)

    def write_held(self) -> None:  # not `release`: logging.Handler's lock method has that name
        held, self._held = self._held, None
        for record in held or []:
            super().emit(record)


def start_up_passed() -> None:
    """The command passed its start-up checks: the run log writes what it held, and writes from now on."""
    for handler in RunLogHandler._instances:
        handler.write_held()


def note_run_dir(path: str) -> None:
    """Called before Hydra creates `path` (the run dir, or a sweep dir): if it does not exist yet, a
    start-up failure removes it again while it holds nothing."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        _new_dirs.add(path)


def _forget_new_dirs() -> None:
    """Remove, while empty, the job's folder when it lies in (or is) a dir noted as new, then those dirs."""
    from hydra.core.hydra_config import HydraConfig

    try:  # unset in Hydra's run-start callbacks, before a job runs
        job_dir = os.path.abspath(HydraConfig.get().runtime.output_dir)
    except Exception:
        job_dir = None
    for path in ([job_dir] if job_dir else []) + sorted(_new_dirs, key=len, reverse=True):
        new = any(path == d or path.startswith(d + os.sep) for d in _new_dirs)
        if new and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)


def _to_run_log(message: str, exc_info: bool = False) -> None:
    if errors.handlers:  # configured once Hydra's job logging is set up; not in Hydra callbacks before it
        start_up_passed()
        errors.error(message, exc_info=exc_info)


def _start_up_failure(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    _forget_new_dirs()
    sys.exit(2)


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            _start_up_failure(str(e))
        except MissingMandatoryValue as e:
            key = e.full_key or "a key"
            _start_up_failure(f"{key} must be given (it has no default): pass {key}=<value> on the command line")
        except RunFault as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            _to_run_log(f"error: {e}")
            sys.exit(3)
        except Exception as e:
            _to_run_log(f"error: {type(e).__name__}: {e}", exc_info=True)
            raise

    return wrapper
