from vdiff.bench import main


def test_bench_times_the_real_training_loop(mnist_root, capsys):
    rows = main(["--batch-sizes", "4", "--variants", "dataloader fp32", "on_device fp32", "--warmup", "1", "--steps", "2"])
    assert [r["variant"] for r in rows] == ["dataloader fp32", "on_device fp32"]
    assert all(r["img_per_s"] > 0 and abs(r["ms_per_step"] * r["img_per_s"] - 4000) < 1e-6 for r in rows)
    assert "| 4 | on_device fp32 |" in capsys.readouterr().out
