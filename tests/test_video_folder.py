"""data=video_folder: your own videos (mp4 through PyAV, GIFs, frame folders) as clips, on tiny files made here."""

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import DATA, ROOT, need_mnist, run
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from vdiff.data import VideoFolderDataModule
from vdiff.data import video_files as vf

av = pytest.importorskip("av")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder of the test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VDIFF_CACHE_DIR", str(folder))
    return folder


def ramp(n: int, size: int = 8, base: int = 0) -> np.ndarray:
    """uint8 (n, size, size) frames, all distinct: frame t holds base + 10 t + the pixel's column."""
    cols = np.arange(size, dtype=np.uint8)[None, None, :]
    return (base + 10 * np.arange(n, dtype=np.uint8)[:, None, None] + cols + np.zeros((1, size, 1), np.uint8)).astype(
        np.uint8
    )


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{t:03d}.png")
    return folder


def write_gif(path: Path, frames: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, optimize=False)
    return path


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """frames uint8 (T, H, W) gray or (T, H, W, 3) RGB, through PyAV's MPEG-4 encoder at high quality."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps, options={"qscale": "1"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            rgb = frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, -1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        container.mux(stream.encode())
    return path


def module(root, **kwargs) -> VideoFolderDataModule:
    settings = {"frames": 3, "frame_stride": 2, "resolution": 8, "batch_size": 2, "eval_batch_size": 4} | kwargs
    dm = VideoFolderDataModule(str(root), **settings)
    dm.prepare_data()
    dm.setup()
    return dm


def take(dm, n: int) -> list[dict]:
    stream = iter(dm.train_dataloader())
    return [next(stream) for _ in range(n)]


def test_frame_folders_and_gifs_give_exact_clips_from_every_start(tmp_path):
    a, b = ramp(6), ramp(7, base=100)
    write_frames(tmp_path / "v" / "a", a)
    write_gif(tmp_path / "v" / "b.gif", b)
    dm = module(tmp_path / "v", val_fraction=0)  # too few videos to hold one out: val = train
    assert dm.shape == (1, 3, 8, 8) and dm.num_classes is None
    assert dm.info() == {"num_frames": 3, "size": 8, "channels": 1, "num_classes": None}
    train = dm.splits["train"]
    assert len(train) == 2 + 3  # a clip spans 5 frames: starts 0..1 of a, 0..2 of b
    expected = [a[s + np.array([0, 2, 4])] for s in range(2)] + [b[s + np.array([0, 2, 4])] for s in range(3)]
    clips = train.clips(torch.arange(5))
    assert clips.dtype == torch.uint8 and clips.shape == (5, 1, 3, 8, 8)
    assert torch.equal(clips[:, 0], torch.from_numpy(np.stack(expected)))
    batch = train.__getitems__([4, 0])
    assert set(batch) == {"x"} and torch.equal(batch["x"], clips[[4, 0]].float() / 127.5 - 1)
    assert batch["x"].min() >= -1 and batch["x"].max() <= 1
    val = next(iter(dm.val_dataloader()))["x"]  # non-overlapping clips, round-robin: a@0, b@0
    assert val.shape == (2, 1, 3, 8, 8) and torch.equal(val, train.__getitems__([0, 2])["x"])
    ref = dm.reference_clips("train", 2)
    assert ref.shape == (2, 1, 3, 8, 8) and torch.allclose(ref, (val + 1) / 2, atol=1e-6)


def test_short_side_resize_centre_crop_and_channels(tmp_path):
    frame = np.full((8, 16, 3), 255, np.uint8)  # 8 high, 16 wide: white borders, red middle 8 columns
    frame[:, 4:12] = (200, 0, 0)
    write_frames(tmp_path / "v" / "wide", np.stack([frame] * 3))
    rgb = module(tmp_path / "v", frames=3, frame_stride=1, channels=3).splits["train"].clips([0])[0]
    assert rgb.shape == (3, 3, 8, 8) and (rgb[0] == 200).all() and (rgb[1:] == 0).all()  # the borders cropped
    gray = module(tmp_path / "v", frames=3, frame_stride=1, channels=1, cache=False).splits["train"].clips([0])[0]
    assert gray.shape == (1, 3, 8, 8) and (gray == round(200 * 0.299)).all()
    small = vf.square(Image.fromarray(frame), resolution=4, channels=3)  # 8x16 -> 4x8 -> centre 4x4
    assert small.shape == (3, 4, 4) and (small[0] > 150).all() and (small[2] < 60).all()


def test_mp4_files_decode_through_pyav(tmp_path):
    gray = np.stack([np.full((16, 16), 20 + 30 * t, np.uint8) for t in range(8)])
    write_mp4(tmp_path / "v" / "clip.mp4", gray)
    frames = vf.decode(str(tmp_path / "v" / "clip.mp4"), resolution=16, channels=1)
    assert frames.shape == (8, 1, 16, 16) and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - gray[:, None].astype(int)).max() <= 4  # lossy, but close
    assert vf.decode(str(tmp_path / "v" / "clip.mp4"), resolution=8, channels=3, max_frames=5).shape == (5, 3, 8, 8)


def test_labels_come_from_first_level_subfolders(tmp_path):
    for name, level in (("cat", 40), ("dog", 220)):
        for i in range(3):
            write_gif(
                tmp_path / "v" / name / f"{i}.gif",
                np.full((6, 8, 8), level, np.uint8) + np.arange(6)[:, None, None].astype(np.uint8),
            )
    dm = module(tmp_path / "v", conditional=True, val_fraction=0.34)
    assert dm.class_names == ["cat", "dog"] and dm.num_classes == 2 and dm.info()["num_classes"] == 2
    assert len(dm.splits["val"]) == 2  # one held-out video per class, one clip each
    for batch in take(dm, 4) + list(dm.val_dataloader()):
        assert torch.equal(batch["label"], batch["cond"]) and batch["label"].dtype == torch.long
        brightness = batch["x"].mean((1, 2, 3, 4))
        assert torch.equal(batch["label"], (brightness > 0).long())  # dog clips are the bright ones
    assert torch.equal(dm.reference_labels("val"), torch.tensor([0, 1]))
    state = dm.state_dict()
    assert state == {"class_names": ["cat", "dog"]}
    fresh = VideoFolderDataModule("/nonexistent", conditional=True)  # sample.py: no videos needed
    fresh.load_state_dict(state)
    assert fresh.num_classes == 2 and fresh.class_names == ["cat", "dog"]
    dm.load_state_dict(state)  # the same classes: fine (Lightning restores it again)
    with pytest.raises(
        ValueError, match=f"data.root={tmp_path / 'v'} holds the classes \\['cat', 'dog'\\].*\\['cat', 'cow'\\]"
    ):
        dm.load_state_dict({"class_names": ["cat", "cow"]})
    with pytest.raises(ValueError, match="data.conditional=false, but the checkpoint was trained with class labels"):
        VideoFolderDataModule("/nonexistent").load_state_dict(state)
    late = VideoFolderDataModule(str(tmp_path / "v"), conditional=True, frames=3)  # checkpoint first, then the folder
    late.load_state_dict({"class_names": ["cat", "cow"]})
    with pytest.raises(ValueError, match="holds the classes"):
        late.prepare_data()
    with pytest.raises(ValueError, match="data.conditional=true.*loose.gif lies directly in it"):
        write_gif(tmp_path / "v" / "loose.gif", ramp(6))
        module(tmp_path / "v", conditional=True)


def test_decoded_frames_are_cached_and_rebuilt_when_anything_changes(tmp_path, cache, monkeypatch):
    write_gif(tmp_path / "v" / "a.gif", ramp(6))
    write_frames(tmp_path / "v" / "b", ramp(6, base=50))
    first = module(tmp_path / "v")
    assert not first.decoded.from_cache and len(list((cache / "video_folder").glob("*.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds these frames")

    with monkeypatch.context() as m:
        m.setattr(vf, "decode", no_decoding)
        again = module(tmp_path / "v")
        assert again.decoded.from_cache and torch.equal(again.splits["train"].frames, first.splits["train"].frames)
    assert not module(tmp_path / "v", frames=2).decoded.from_cache  # the frames a clip needs are in the key
    assert not module(tmp_path / "v", resolution=4).decoded.from_cache  # another resolution
    assert not module(tmp_path / "v", channels=3).decoded.from_cache
    assert not module(tmp_path / "v", max_frames=5).decoded.from_cache
    stat = os.stat(tmp_path / "v" / "b" / "f002.png")
    os.utime(tmp_path / "v" / "b" / "f002.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a frame touched
    assert not module(tmp_path / "v").decoded.from_cache
    write_gif(tmp_path / "v" / "c.gif", ramp(6, base=90))  # a new video
    grown = module(tmp_path / "v")
    assert not grown.decoded.from_cache and len(grown.decoded.lengths) == 3


def test_the_batch_stream_resumes_exactly(tmp_path):
    for i in range(3):
        write_gif(tmp_path / "v" / f"{i}.gif", ramp(9, base=20 * i))
    dm = module(tmp_path / "v", seed=3, val_fraction=0)
    straight = [b["x"] for b in take(dm, 12)]  # 15 clips, 7 batches per epoch: crosses an epoch
    assert all(
        torch.equal(a, b["x"]) for a, b in zip(straight, take(module(tmp_path / "v", seed=3, val_fraction=0), 12))
    )
    dm.trainer = SimpleNamespace(
        global_step=4, accumulate_grad_batches=2, global_rank=0, world_size=1
    )  # 8 batches done
    assert all(torch.equal(a, b["x"]) for a, b in zip(straight[8:], take(dm, 4)))
    other = module(tmp_path / "v", seed=4, val_fraction=0)
    assert not all(torch.equal(a, b["x"]) for a, b in zip(straight, take(other, 12)))


def test_missing_or_empty_folders_name_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"data.root={tmp_path / 'none'} is not a folder"):
        module(tmp_path / "none")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    with pytest.raises(FileNotFoundError, match=f"data.root={tmp_path / 'empty'} holds no videos"):
        module(tmp_path / "empty")
    with pytest.raises(ValueError, match="data.root is not set"):
        VideoFolderDataModule(None)
    with pytest.raises(ValueError, match="data.channels=2"):
        VideoFolderDataModule(str(tmp_path), channels=2)


def test_unreadable_truncated_and_short_videos_are_named_or_skipped(tmp_path):
    good = write_mp4(tmp_path / "v" / "good.mp4", np.stack([np.full((16, 16), 10 * t, np.uint8) for t in range(8)]))
    data = good.read_bytes()
    (tmp_path / "v" / "cut.mp4").write_bytes(data[: len(data) // 2])  # truncated: no index at the end
    with pytest.raises(ValueError, match=f"{tmp_path / 'v' / 'cut.mp4'} cannot be decoded"):
        module(tmp_path / "v", resolution=16)
    (tmp_path / "v" / "cut.mp4").unlink()
    (tmp_path / "v" / "noise.webm").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="noise.webm cannot be decoded"):
        module(tmp_path / "v", resolution=16)
    (tmp_path / "v" / "noise.webm").unlink()
    write_frames(tmp_path / "v" / "broken", ramp(8))
    (tmp_path / "v" / "broken" / "f003.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="f003.png \\(a frame of .*broken\\) cannot be read"):
        module(tmp_path / "v", resolution=16)
    write_gif(tmp_path / "v" / "short.gif", ramp(4))
    (tmp_path / "v" / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "v" / "broken" / "f003.png").unlink()  # the folder is fine again: 7 frames
    with pytest.raises(ValueError, match=f"{tmp_path / 'v' / 'cut.mp4'} cannot be decoded"):
        module(tmp_path / "v", resolution=16, frames=3, frame_stride=3)
    (tmp_path / "v" / "cut.mp4").unlink()
    with pytest.raises(
        ValueError,
        match="short.gif has 4 frames, fewer than the 7 a clip needs \\(data.frames=3 x data.frame_stride=3\\)",
    ):
        module(tmp_path / "v", resolution=16, frames=3, frame_stride=3)
    (tmp_path / "v" / "cut.mp4").write_bytes(data[: len(data) // 2])
    dm = module(tmp_path / "v", resolution=16, frames=3, frame_stride=3, skip_bad_files=True, val_fraction=0)
    assert dm.skipped == 2 and dm.decoded.bad == ["cut.mp4"] and dm.decoded.short == ["short.gif"]
    assert len(dm.splits["train"]) == (8 - 6) + (7 - 6)  # good.mp4 (8 frames) and broken/ (7 frames) remain
    assert next(iter(dm.train_dataloader()))["x"].shape == (2, 1, 3, 16, 16)


def test_yaml_instantiates_and_the_experiment_follows_the_data(tmp_path):
    write_gif(tmp_path / "v" / "a" / "0.gif", ramp(10))
    write_gif(tmp_path / "v" / "b" / "0.gif", ramp(10, base=120))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=video_folder_cpu",
                f"data.root={tmp_path / 'v'}",
                "data.channels=3",
                "data.conditional=true",
            ],
        )
    assert cfg.model.net.in_channels == 3 and cfg.model.net.image_size == 32 and cfg.data.frames == 8
    data = instantiate(cfg.data, seed=0, resolution=8, frames=4, batch_size=2)
    data.prepare_data()
    data.setup()
    assert data.info() == {"num_frames": 4, "size": 8, "channels": 3, "num_classes": 2}
    assert next(iter(data.train_dataloader()))["x"].shape == (2, 3, 4, 8, 8)


def test_make_moving_mnist_videos_writes_readable_clips(tmp_path):
    need_mnist()
    from vdiff.data.make_moving_mnist_videos import main

    main(
        [
            "--out",
            str(tmp_path / "mm"),
            "--n",
            "4",
            "--frames",
            "6",
            "--size",
            "32",
            "--num-directions",
            "4",
            "--data",
            str(DATA),
        ]
    )
    files = sorted(p.relative_to(tmp_path / "mm").as_posix() for p in (tmp_path / "mm").rglob("*.mp4"))
    assert len(files) == 4 and all(f.split("/")[0] in ("right", "down", "left", "up") for f in files)
    frames = vf.decode(str(next((tmp_path / "mm").rglob("*.mp4"))), resolution=32, channels=1)
    assert frames.shape == (6, 1, 32, 32) and frames.max() > 200 and (frames < 30).mean() > 0.5  # digits on black


TINY_VIDEO = [
    "experiment=video_folder_cpu",
    "data.frames=4",
    "data.resolution=16",
    "data.channels=3",
    "data.conditional=true",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "model.net.channels=8",
    "model.net.channel_mult=[1,2]",
    "model.net.spatial_resolutions=[8]",
    "model.net.temporal_resolutions=[8]",
    "sampler.steps=2",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "callbacks.samples.num_samples=2",
    "callbacks.progress_bar=null",
]


def test_train_then_sample_on_a_video_folder(tmp_path):
    for name, base in (("left", 0), ("right", 120)):
        for i in range(3):
            rgb = np.repeat(ramp(8, size=16, base=base + 5 * i)[..., None], 3, -1)
            write_mp4(tmp_path / "videos" / name / f"{i}.mp4", rgb)
    env = {"VDIFF_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "run"
    run("train.py", *TINY_VIDEO, f"data.root={tmp_path / 'videos'}", f"hydra.run.dir={out}", env=env)
    c = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert c["global_step"] == 2 and c["VideoFolderDataModule"] == {"class_names": ["left", "right"]}
    assert c["config"]["model"]["net"]["num_classes"] == 2 and c["config"]["model"]["net"]["in_channels"] == 3
    assert sorted((out / "samples").glob("videos_*.gif"))
    run(
        "sample.py",
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
        "num_samples=2",
        "labels=[1]",
        "progress=false",
        f"out_dir={tmp_path / 'samples'}",
        env=env,
    )
    samples = torch.load(tmp_path / "samples" / "samples.pt")
    assert samples.shape == (2, 3, 4, 16, 16) and samples.min() >= 0 and samples.max() <= 1
    assert all((tmp_path / "samples" / f"samples.{ext}").stat().st_size > 0 for ext in ("gif", "png", "mp4"))
    (tmp_path / "videos" / "right").rename(tmp_path / "videos" / "up")  # another class list at resume
    proc = run(
        "train.py",
        *TINY_VIDEO,
        f"data.root={tmp_path / 'videos'}",
        "trainer.max_steps=4",
        "ckpt_path=last",
        f"hydra.run.dir={out}",
        env=env,
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert (
        proc.returncode == 2
        and len(lines) == 1
        and f"data.root={tmp_path / 'videos'} holds the classes ['left', 'up']" in lines[0]
    ), proc.stderr[-2000:]
