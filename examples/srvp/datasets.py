"""Training data of the SRVP example: a stream of batches indexed by step, and fixed validation clips.

The batch of step s is generated from its own seed, derived from (seed, s): batches do not depend on the
number of DataLoader workers, and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch

from examples.srvp.config import TrainConfig

__all__ = ["BatchStream", "generate_clips", "make_data", "step_seed"]


# ----------------------------------------------------------------------------------------------------- data
def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """Seed of the batch of ``step``: distinct per (seed, step), so batches do not depend on workers or resumes.

    ``stream`` separates independent uses (0: training batches, 1: the validation clips)."""
    return int(np.random.SeedSequence([seed, step], spawn_key=(stream,)).generate_state(1)[0])


class BatchStream(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Training batches indexed by step: item s is the batch of step s, generated from its own seed."""

    def __init__(self, make_batch: Callable[[np.random.RandomState], np.ndarray], seed: int) -> None:
        self.make_batch = make_batch
        self.seed = seed

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, step: int) -> torch.Tensor:
        from latentdyn.video.collate import collate_videos

        return collate_videos(list(self.make_batch(np.random.RandomState(step_seed(self.seed, step)))))


def _digits(cfg: TrainConfig, split: str) -> np.ndarray:
    from latentdyn.video.mnist import digit_source

    return np.asarray(digit_source(cfg.data_dir, split).images)


def generate_clips(
    pool: np.ndarray,
    n: int,
    seq_len: int,
    rng: np.random.RandomState,
    *,
    num_digits: int,
    max_speed: int,
    deterministic: bool,
) -> np.ndarray:
    """n Moving MNIST clips, uint8 (n, T, 64, 64), drawn from ``rng`` in the official per-clip order."""
    from latentdyn.video.moving_mnist import compose_frames, draw_trajectory

    clips = []
    for _ in range(n):
        chosen, positions = [], []
        for _ in range(num_digits):
            chosen.append(pool[rng.randint(0, len(pool))])
            traj = draw_trajectory(
                rng, seq_len=seq_len, limit=64 - pool.shape[1], deterministic=deterministic, max_speed=max_speed
            )
            positions.append(traj.positions)
        clips.append(compose_frames(chosen, positions, 64))
    return np.stack(clips)


def make_data(cfg: TrainConfig) -> tuple[BatchStream, torch.Tensor]:
    """Training stream and the fixed validation clips (T, N, C, H, W) from held-out digits."""
    digits = _digits(cfg, "train")
    rs = np.random.RandomState(42)  # 95/5 split of the training digits, as the official get_fold
    order = rs.permutation(len(digits))
    n_train = int(0.95 * len(digits))
    train_digits, val_digits = digits[order[:n_train]], digits[order[n_train:]]

    def make_batch(
        rng: np.random.RandomState, pool: np.ndarray = train_digits, n: int = cfg.batch_size, t: int = cfg.seq_len
    ) -> np.ndarray:
        return generate_clips(
            pool, n, t, rng, num_digits=cfg.num_digits, max_speed=cfg.max_speed, deterministic=cfg.deterministic
        )

    from latentdyn.video.collate import collate_videos

    val = collate_videos(
        list(
            make_batch(
                np.random.RandomState(step_seed(cfg.seed, 0, stream=1)), val_digits, cfg.val_sequences, cfg.test_len
            )
        )
    )
    return BatchStream(make_batch, cfg.seed), val
