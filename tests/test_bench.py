import vdiff.bench
from vdiff.bench import main


def test_bench_times_the_real_training_loop(mnist_root, capsys, monkeypatch):
    """Each row is a real fit: the task's training_step runs warmup + steps times on batches of the
    asked size, and the timer covers the `--steps` optimizer steps after the warm-up."""
    batches = []
    real_setup = vdiff.bench.setup

    def counting_setup(cfg, **kwargs):
        datamodule, task, trainer, rest = real_setup(cfg, **kwargs)
        step = task.training_step
        task.training_step = lambda batch, *a, **k: batches.append(len(batch["x"])) or step(batch, *a, **k)
        return datamodule, task, trainer, rest

    monkeypatch.setattr(vdiff.bench, "setup", counting_setup)
    rows = main(
        ["--batch-sizes", "4", "--variants", "dataloader fp32", "on_device fp32", "--warmup", "1", "--steps", "2"]
    )
    assert [r["variant"] for r in rows] == ["dataloader fp32", "on_device fp32"]
    assert batches == [4] * 6 and [r["timed_steps"] for r in rows] == [2, 2]
    assert all(r["examples_per_s"] > 0 for r in rows)
    assert all(r["tokens_per_s"] == 0 for r in rows)
    assert "| 4 | on_device fp32 |" in capsys.readouterr().out


def test_bench_reports_tokens_per_second_for_text(capsys):
    rows = main(
        [
            "--experiment",
            "text_patterns",
            "--model",
            "transformer_tiny",
            "--batch-sizes",
            "8",
            "--variants",
            "fp32",
            "--warmup",
            "1",
            "--steps",
            "2",
        ]
    )
    assert rows[0]["tokens_per_s"] == 32 * rows[0]["examples_per_s"] > 0
    assert "| 8 | fp32 |" in capsys.readouterr().out


def test_attention_bench_compares_factorized_and_full_attention(capsys):
    from vdiff.bench_attention import main as attention_main

    rows = attention_main(["--shapes", "2x4x4", "--batch-size", "1", "--steps", "1", "--warmup", "1"])
    assert [r["model"] for r in rows] == ["factorized_unet_tiny", "full3d_unet_tiny"]
    assert all(r["ms"] > 0 and r["shape"] == "2x4x4" for r in rows)
    assert "| full3d_unet_tiny | 2x4x4 | 1 | fp32 |" in capsys.readouterr().out


def test_attention_bench_without_cuda_takes_the_cpu_shapes_and_prints_each_row(capsys, monkeypatch):
    import vdiff.bench_attention as bench_attention

    monkeypatch.setattr(bench_attention.torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(bench_attention.CPU_DEFAULTS, "shapes", ["2x4x4"])  # the test's budget, not the CLI's
    measured = []
    real_measure = bench_attention.measure

    def spy(net, shape, **kwargs):
        measured.append((shape, kwargs["batch_size"], kwargs["steps"]))
        out = real_measure(net, shape, **kwargs)
        assert "| model |" in capsys.readouterr().out  # the header is out before the first row is measured
        return out

    monkeypatch.setattr(bench_attention, "measure", spy)
    rows = bench_attention.main(["--models", "factorized_unet_tiny"])
    assert measured == [((2, 4, 4), 2, 2)]  # CPU_DEFAULTS' batch and steps, not the GPU table's 8 and 10
    assert rows[0]["shape"] == "2x4x4" and rows[0]["batch"] == 2
    assert bench_attention.GPU_DEFAULTS["shapes"][-1] == "16x64x64"
