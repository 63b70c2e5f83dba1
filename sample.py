"""Sample from a checkpoint: rebuild its task from the stored run config, run a sampler, write files.

    python sample.py ckpt_path=<file> sampler=ddim sampler.steps=50 num_samples=64 seed=0 out_dir=<dir>
    python sample.py ckpt_path=<file> num_samples=10000 metrics=[fid] out_dir=<dir>

    python sample.py ckpt_path=<text ckpt> sampler=unmask sampler.steps=256 num_samples=16 out_dir=<dir>
    python sample.py ckpt_path=<text ckpt> prompt="ROMEO: O, ____ me" out_dir=<dir>   # infill the _

The data decides the files: images give <out_dir>/samples.png (grid) and samples.pt ((N, C, H, W)
float in [0, 1]); videos give samples.gif, samples.png (one row per clip, one column per frame),
samples.pt ((N, C, T, H, W) in [0, 1]) and samples.mp4 when PyAV is installed; text gives
samples.txt and samples.json (token ids and text). Always <out_dir>/metrics.json: a "sampling" block
(sampler, steps, eta, guidance_scale, num_samples, seconds, ...) and one block per metric.
An out_dir that already holds files is refused unless overwrite=true (vdiff/utils/out_dir.py).
The steps (load, check, draw or reconstruct) are in vdiff/sample_run.py.

A checkpoint of a task that reconstructs instead (a VAE, `experiment=video_vae`) writes the
reconstructions of the first num_samples clips of `reconstruct_split` as its samples, input above
reconstruction in <out_dir>/comparison/, and their MSE and PSNR in metrics.json's "reconstruction"
block; metrics measure the reconstructions (with the clips' true labels as the requested ones).

The sampler is the checkpoint's; `sampler=<group>` picks another and `sampler.<key>=<value>` changes
one value of either (see vdiff/utils/sampling.py); sample.log and metrics.json's "changed_from_checkpoint"
name each value that differs from the checkpoint's, and why (a picked group's default, or the command line). With -m every combination of the overrides'
values is a job writing into <out_dir>/<job number>/, and <out_dir>/sweep.csv and sweep.md collate
their metrics.json (vdiff/proof/sweep.py):

    python sample.py -m ckpt_path=<file> sampler=ddim sampler.steps=10,20,50 metrics=[fid] out_dir=<dir>
"""

import json
import logging
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vdiff.contracts import ReconstructionTask
from vdiff.run import save_run_config
from vdiff.sample_run import (
    build_metrics,
    check_labels,
    check_length,
    draw,
    load_task,
    pick_device,
    prompt_tokens,
    reconstruct,
)
from vdiff.utils.checks import SAMPLE, check_ranges
from vdiff.utils.cli import friendly_errors, start_up_passed
from vdiff.utils.command_line import check_command_line
from vdiff.utils.config import check_target_keys
from vdiff.utils.help import register_help
from vdiff.utils.sampling import describe_changes, register_open_sampler

log = logging.getLogger("vdiff.sample")
register_open_sampler()
register_help()


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
@friendly_errors
def main(cfg: DictConfig) -> None:
    logging.captureWarnings(True)  # warnings to stderr and sample.log (configs/hydra/job_logging/vdiff.yaml)
    check_target_keys(
        cfg, skip=("hydra", "sampler")
    )  # metrics.<name>.<key> is an argument the metric takes (the sampler: load_task)
    check_ranges(cfg, SAMPLE)  # num_samples, batch_size, seed, metric settings (vdiff/utils/checks.py)
    out_dir = HydraConfig.get().runtime.output_dir  # out_dir, or <out_dir>/<job number> with -m
    task, datamodule, changes = load_task(cfg)
    metrics = build_metrics(cfg, datamodule, task)
    check_labels(cfg, datamodule)
    check_length(cfg, datamodule, task)
    init = prompt_tokens(cfg, datamodule)
    device = pick_device(cfg)
    task.to(device)
    save_run_config(cfg, out_dir)  # start-up passed: <out_dir>/.hydra/ and sample.log are written from here on
    start_up_passed()
    if changes:
        log.info(describe_changes(changes))
    if isinstance(task, ReconstructionTask):
        samples, labels, record = reconstruct(cfg, task, datamodule=datamodule, out_dir=out_dir)
        results = {"reconstruction": record}
    else:
        samples, labels, record = draw(cfg, task, datamodule, init=init)
        results = {"sampling": record | ({"changed_from_checkpoint": changes} if changes else {})}
    datamodule.write_samples(samples, out_dir)
    for name, metric in metrics.items():
        results[name] = metric(samples, datamodule, device, task=task, out_dir=out_dir, labels=labels)
        log.info("%s: %s", name, {k: v for k, v in results[name].items() if not isinstance(v, list)})
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(results, f, indent=2)
    log.info("wrote %d samples (%.1f s) to %s", len(samples), record["seconds"], out_dir)


if __name__ == "__main__":
    check_command_line("sample")  # an unknown key or group option: one sentence naming the closest, exit 2
    main()
