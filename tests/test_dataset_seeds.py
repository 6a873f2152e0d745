"""The clip datasets' random draws: ``seed`` (a stream of their own, apart in every DataLoader worker), ``rng``
(numpy Generator or RandomState, checked when the dataset is made), or numpy's global stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentdyn.video.datasets import BAIRDataset, Human36MDataset, KTHDataset, VideoFolderDataset

# Six training videos (persons 1-20); frame t of video v has grey level 40 v + t, so a clip names its draw.
VIDEOS = [("walking", 1, 1), ("running", 2, 1), ("boxing", 3, 2), ("jogging", 4, 1), ("handwaving", 5, 3),
          ("handclapping", 6, 4)]  # fmt: skip


@pytest.fixture(scope="module")
def kth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kth")
    for v, (action, person, trial) in enumerate(VIDEOS):
        folder = root / "processed_64" / action / f"person{person:02d}_{action}_d{trial}"
        folder.mkdir(parents=True)
        for t in range(30 + v):
            Image.fromarray(np.full((64, 64), 40 * v + t, dtype=np.uint8)).save(folder / f"image-{t + 1:03d}.png")
    return root


def clip_id(clip: np.ndarray) -> tuple[int, int]:
    """(video, start) of a clip of the fixture."""
    level = int(clip[0, 0, 0])
    return level // 40, level % 40


def worker_batches(dataset: torch.utils.data.Dataset[np.ndarray], torch_seed: int) -> list[list[tuple[int, int]]]:
    """Four batches of four clips from two workers (batches 0 and 2 from worker 0, 1 and 3 from worker 1)."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=4,
        num_workers=2,
        sampler=range(16),
        generator=torch.Generator().manual_seed(torch_seed),
        collate_fn=lambda clips: [clip_id(c) for c in clips],
    )
    return list(loader)


def test_a_seeded_dataset_draws_apart_in_every_worker_and_reproducibly(kth_root: Path) -> None:
    seeded = KTHDataset(kth_root, seq_len=8, seed=5, length=16)
    first = worker_batches(seeded, torch_seed=0)
    assert first[0] != first[1] and first[2] != first[3]  # the two workers draw different clips
    assert worker_batches(KTHDataset(kth_root, seq_len=8, seed=5, length=16), torch_seed=0) == first
    assert worker_batches(KTHDataset(kth_root, seq_len=8, seed=6, length=16), torch_seed=0) != first
    assert worker_batches(seeded, torch_seed=1) != first  # a new epoch (torch's seed) draws anew
    # The trap the seed avoids: a generator is copied into both workers, which then draw the same clips.
    shared = worker_batches(KTHDataset(kth_root, seq_len=8, rng=np.random.default_rng(5), length=16), torch_seed=0)
    assert shared[0] == shared[1]


def test_a_seeded_dataset_reproduces_its_draws_in_the_main_process(kth_root: Path) -> None:
    one, again, other = (KTHDataset(kth_root, seq_len=8, seed=s) for s in (3, 3, 4))
    seq = [one.draw(i) for i in range(12)]
    assert seq == [again.draw(i) for i in range(12)]
    assert seq != [other.draw(i) for i in range(12)]
    assert len(set(seq)) > 3  # the stream advances: not one clip again and again
    for ref in seq[:3]:  # the clip read is the clip drawn
        assert clip_id(one.read(ref))[1] == ref.start


def test_a_random_state_draws_as_numpy_s_legacy_stream(kth_root: Path) -> None:
    """rng=RandomState(s) was accepted and then failed on the first item ('no attribute integers')."""
    dataset = KTHDataset(kth_root, seq_len=8, rng=np.random.RandomState(7))
    first_levels = [clip_id(np.asarray(Image.open(v.frames[0]))[None])[0] for v in dataset.videos]
    reference = np.random.RandomState(7)
    for _ in range(6):
        video = reference.randint(len(dataset.videos))  # every video of the fixture is long enough
        start = reference.randint(len(dataset.videos[video].frames) - 8 + 1)
        assert clip_id(dataset[0]) == (first_levels[video], start)


def make(kind: str, tmp_path: Path, **draws: object) -> object:
    if kind == "kth":
        return KTHDataset(tmp_path / "missing", seq_len=4, **draws)  # type: ignore[arg-type]
    if kind == "human36m":
        return Human36MDataset(tmp_path / "missing", seq_len=4, **draws)  # type: ignore[arg-type]
    if kind == "bair":
        return BAIRDataset(tmp_path / "missing", seq_len=4, **draws)  # type: ignore[arg-type]
    return VideoFolderDataset(tmp_path, seq_len=4, **draws)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["kth", "human36m", "bair", "folder"])
def test_random_draw_arguments_are_checked_when_the_dataset_is_made(kind: str, tmp_path: Path) -> None:
    """A torch.Generator or an int passed as rng failed at the first item with an AttributeError."""
    with pytest.raises(TypeError, match=r"^rng: expected a numpy\.random\.Generator, .*got Generator"):
        make(kind, tmp_path, rng=torch.Generator())
    with pytest.raises(TypeError, match=r"^rng: .*got int; for a seed, pass seed=INT"):
        make(kind, tmp_path, rng=3)
    with pytest.raises(TypeError, match=r"^seed: expected an int >= 0 or None, got str '3'"):
        make(kind, tmp_path, seed="3")
    with pytest.raises(ValueError, match=r"^seed: expected an int >= 0 or None, got -1"):
        make(kind, tmp_path, seed=-1)
    with pytest.raises(ValueError, match=r"^seed: give rng or seed, not both"):
        make(kind, tmp_path, seed=1, rng=np.random.default_rng(1))
