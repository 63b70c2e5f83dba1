from vdiff.utils.config import ConfigError, build, load_checkpoint

__all__ = ["ConfigError", "build", "load_checkpoint"]
