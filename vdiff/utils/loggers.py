"""Logger factories that need more than a `_target_`."""
import os
import warnings

from lightning.pytorch.loggers import WandbLogger


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb(offline: bool | None = None, **kwargs) -> WandbLogger:
    """WandbLogger that never prompts: with no API key, no netrc entry and no WANDB_MODE it runs
    offline (files under save_dir/wandb, `wandb sync` uploads them later) and says so."""
    if offline is None:
        offline = not (_wandb_credentials() or os.environ.get("WANDB_MODE"))
        if offline:
            warnings.warn("wandb: no API key and no WANDB_MODE; logging offline (run `wandb sync` later to upload)", stacklevel=2)
    os.makedirs(kwargs.get("save_dir", "."), exist_ok=True)
    return WandbLogger(offline=offline, **kwargs)
