"""The test clips of an evaluation: reading each dataset's test set, and a run's defaults for them.

Part of :mod:`examples.srvp.evaluate`, which re-exports the public names; the demo reads its clips with these too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from examples.srvp._cli import (
    shell_quote,
)
from examples.srvp.config import DATASETS
from examples.srvp.datasets import read_clip_array
from examples.srvp.model import FrameModel
from latentdyn._checks import check_positive_int

DEFAULT_NT_GEN = {"kth": 40, "human36m": 53, "bair": 30}
"""The official README's ``--nt_gen`` (conditioning + predicted frames) per dataset."""


def load_sequences(path: str | Path) -> torch.Tensor:
    """Test clips of a ``.npz`` test set as uint8 (T, N, C, H, W).

    Moving MNIST files (``sequences`` (T, N, H, W), time-major, as the official ``make_test_set``) are read
    with :func:`latentdyn.video.moving_mnist.load_test_set`, which validates them.
    """
    from latentdyn.video.moving_mnist import load_test_set

    data = load_test_set(path)
    return rearrange(torch.from_numpy(np.ascontiguousarray(data.sequences)), "t n h w -> t n 1 h w")


KTH_TEST_SET_NAME = re.compile(r"svg_test_set_(\d+)\.npz")
"""The name ``kth-test-set`` gives a KTH test set of T-frame clips (sample-major, (N, T, H, W)); any other
``.npz`` is read as time-major clips of one's own (:func:`read_clip_archive`)."""

HUMAN36M_TEST_SET_NAME = re.compile(r"test_set_(\d+)_(\d+)")
"""The name ``human36m-test-set`` gives the folder of a Human3.6M test set: clip length, then subsampling."""


def _stack(clips: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Sample-major uint8 clips (N, T, H, W) or (N, T, H, W, C) -> uint8 (T, N, C, H, W)."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(clips) if isinstance(clips, list) else clips))
    if batch.dim() == 4:
        return rearrange(batch, "n t h w -> t n 1 h w")
    return rearrange(batch, "n t h w c -> t n c h w")


def read_clip_archive(file: Path) -> torch.Tensor:
    """The uint8 clips (T, N, C, H, W) of an ``.npz`` file whose ``sequences`` array is time-major uint8
    (T, N, H, W) or (T, N, H, W, C): clips of one's own, saved with ``numpy.savez(file, sequences=...)``.
    Errors name ``--test-set`` and the file (:func:`examples.srvp.datasets.read_clip_array`)."""
    seq = read_clip_array(file, "--test-set")
    x = torch.from_numpy(seq)
    return x.unsqueeze(2) if x.dim() == 4 else rearrange(x, "t n h w c -> t n c h w")


def load_test_clips(
    dataset: str,
    path: str | Path,
    *,
    nt_gen: int,
    subsampling: int = 8,
    image_size: int = 64,
    grayscale: bool = False,
    crop: str | None = None,
    frame_step: int = 1,
    max_sequences: int = 0,
) -> torch.Tensor:
    """The test clips of ``dataset`` as uint8 (T, N, C, H, W) (divide by 255 for frames in [0, 1]).

    Args:
        dataset: ``"smmnist"``, ``"kth"``, ``"human36m"``, ``"bair"`` or ``"folder"``.
        path: the test data (see the module docstring's table).
        nt_gen: frames per clip T (names the KTH file and the Human3.6M folder; BAIR and folder clips are
            read with this length; SM-MNIST files keep their length). For every dataset but SM-MNIST, ``path``
            may also be an ``.npz`` file of uint8 clips (:func:`read_clip_archive`; a KTH test set's name,
            ``svg_test_set_<T>.npz``, excepted), cut to their first ``nt_gen`` frames.
        subsampling: Human3.6M frame subsampling (names the folder).
        image_size, grayscale, crop, frame_step: how ``folder`` videos are read (the training options);
            ``frame_step`` also applies to the clips of an ``.npz``.
        max_sequences: read only the first N clips (0: all).

    Raises:
        FileNotFoundError: the test set does not exist (the message says which command makes it).
        ValueError: an unknown dataset, ill-formed test data, or ``max_sequences`` < 0.
    """
    from examples.srvp.datasets import check_folder_lengths
    from latentdyn.video import datasets as vd
    from latentdyn.video.datasets.bair import BAIR_FRAMES

    check_positive_int(max_sequences, "max_sequences", minimum=0)
    if dataset not in DATASETS:
        raise ValueError(f"--dataset: expected one of {DATASETS}, got {dataset!r}")
    root = Path(path).expanduser()
    if dataset == "smmnist":
        if root.is_dir():
            raise ValueError(
                f"--test-set: {root} is a folder; an SM-MNIST test set is an .npz file (made by python -m "
                "examples.srvp.data smmnist-test-set)"
            )
        sequences = load_sequences(root)
        return sequences[:, :max_sequences] if max_sequences else sequences
    if root.suffix == ".npz" and root.is_file() and not KTH_TEST_SET_NAME.fullmatch(root.name):
        # Clips of one's own as arrays (read_clip_archive), for any dataset's model (a KTH run's own clips were
        # looked for as a folder holding svg_test_set_<T>.npz; demo read them). Read as the run read its
        # videos: one frame in frame_step (a folder run trained on an .npz read it so).
        clips = read_clip_archive(root)
        span = (nt_gen - 1) * frame_step + 1 if nt_gen else clips.shape[0]
        if clips.shape[0] < span:
            every = f" (one in {frame_step}: {span} frames)" if frame_step > 1 else ""
            raise ValueError(
                f"--test-set: {root} holds clips of {clips.shape[0]} frames, fewer than the {nt_gen}{every} asked "
                "for; lower --nt-gen"
            )
        clips = clips[:span:frame_step]
        return clips[:, :max_sequences] if max_sequences else clips
    if dataset == "kth":
        t_len = nt_gen
        named = KTH_TEST_SET_NAME.fullmatch(root.name)
        if named is not None:
            root, t_len = root.parent, int(named.group(1))
        file = root / f"svg_test_set_{t_len}.npz"
        if not file.is_file():
            raise FileNotFoundError(
                f"--test-set: no KTH test set {file}; make it with "
                f"`python -m examples.srvp.data kth-test-set {shell_quote(root)} --seq-len {t_len}`"
            )
        sequences_np = vd.KTHTestDataset(root, seq_len=t_len).sequences
        return _stack(sequences_np[:max_sequences] if max_sequences else sequences_np)
    data: Any
    if dataset == "human36m":
        t_len, sub = nt_gen, subsampling
        named = HUMAN36M_TEST_SET_NAME.fullmatch(root.name)
        if named is not None:
            root, t_len, sub = root.parent, int(named.group(1)), int(named.group(2))
        folder = root / f"test_set_{t_len}_{sub}"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"--test-set: no Human3.6M test set {folder}; make it with "
                f"`python -m examples.srvp.data human36m-test-set {shell_quote(root)} --seq-len {t_len} "
                f"--subsampling {sub}`"
            )
        data = vd.Human36MTestDataset(root, seq_len=t_len, subsampling=sub)
    elif dataset == "bair":
        if not (root / "processed_data" / "test").is_dir():
            raise FileNotFoundError(
                f"--test-set: no BAIR test split {root / 'processed_data' / 'test'}; make it with "
                f"`python -m examples.srvp.data convert-bair RAW_DIR {shell_quote(root)}`"
            )
        if nt_gen > BAIR_FRAMES:
            raise ValueError(f"--nt-gen: BAIR test videos have {BAIR_FRAMES} frames, got {nt_gen}")
        data = vd.BAIRDataset(root, seq_len=nt_gen, split="test")
    else:
        try:
            data = vd.VideoFolderDataset(
                root,
                seq_len=nt_gen,
                image_size=image_size,
                crop=crop,
                grayscale=grayscale,
                frame_step=frame_step,
                random_start=False,
            )
        except (ValueError, FileNotFoundError) as e:  # (the dataset names its argument, root: the test set here)
            if not str(e).startswith("root:"):
                raise
            raise type(e)("--test-set:" + str(e).removeprefix("root:")) from None
        check_folder_lengths(data, "--nt-gen", "--test-set")  # before any clip is decoded
    n = len(data) if not max_sequences else min(max_sequences, len(data))
    return _stack([data[i] for i in range(n)])


def default_n_samples(train_cfg: dict[str, Any], model: FrameModel) -> int:
    """The official README's ``--n_samples``: 1 for deterministic Moving MNIST, else ``test.py``'s 100; 1 for a
    model without noise too, whose samples are all the same."""
    deterministic_data = train_cfg.get("dataset", "smmnist") == "smmnist" and bool(train_cfg.get("deterministic"))
    return 1 if deterministic_data or not model.config.use_noise else 100


def default_nt_gen(dataset: str, train_cfg: dict[str, Any]) -> int | None:
    """Frames per test clip when ``--nt-gen`` is not given: the official README's length of the dataset, the
    run's ``seq_len_test`` (else ``seq_len``) for a folder of videos, None otherwise (the clips' own length)."""
    if dataset == "folder":
        return int(train_cfg.get("seq_len_test") or train_cfg.get("seq_len") or 0) or None
    return DEFAULT_NT_GEN.get(dataset)


def run_clip_options(train_cfg: dict[str, Any], model: FrameModel) -> dict[str, Any]:
    """How a run reads its test clips (:func:`load_test_clips`' keyword arguments): its Human3.6M subsampling,
    the model's frame size and channels, its folder crop and frame step."""
    crop = _train_value(train_cfg, "folder_crop", "none")
    return {
        "subsampling": int(_train_value(train_cfg, "subsampling", 8)),
        "image_size": model.config.image_size,
        "grayscale": model.config.channels == 1,
        "crop": None if crop == "none" else crop,
        "frame_step": int(_train_value(train_cfg, "folder_frame_step", 1)),
    }


def smmnist_test_set_hint(train_cfg: dict[str, Any]) -> str:
    """What a Moving MNIST run's missing ``--test-set`` should be: the complete command that makes the test set
    of the run's data settings (its ``data_dir``'s test digits, deterministic or not), and the file it writes."""
    from examples.srvp.data import smmnist_test_set_command

    def setting(key: str, kind: type, default: Any) -> Any:
        value = train_cfg.get(key)
        return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else default

    data_dir = setting("data_dir", str, "") if train_cfg.get("dataset", "smmnist") == "smmnist" else ""
    make, file = smmnist_test_set_command(
        data_dir or "embedded",
        deterministic=setting("deterministic", bool, False),
        num_digits=setting("num_digits", int, 2),
        max_speed=setting("max_speed", int, 4),
    )
    return f"make it with: {make}, then pass --test-set {shell_quote(file)}"


def _test_data_hint(dataset: str, train_cfg: dict[str, Any], run_file: Path) -> str:
    """What ``--test-set`` should name when a run's data_dir cannot stand in for it."""
    if dataset == "smmnist":
        return smmnist_test_set_hint(train_cfg)
    if dataset == "folder":
        return "a folder of test videos, or an .npz whose sequences are uint8 (T, N, H, W[, C])"
    if train_cfg.get("dataset") != dataset:
        return f"its test data: this run was trained on {train_cfg.get('dataset')!r}, so its data_dir is not that"
    return f"its test data: {run_file} names no data_dir"


def _names_a_test_set(dataset: str, path: Path) -> bool:
    """Whether ``path`` is a KTH test file or a Human3.6M test folder given by name (it fixes the length)."""
    if dataset == "kth":
        return KTH_TEST_SET_NAME.fullmatch(path.name) is not None
    return dataset == "human36m" and HUMAN36M_TEST_SET_NAME.fullmatch(path.name) is not None


def _train_value(train_cfg: dict[str, Any], key: str, default: Any) -> Any:
    value = train_cfg.get(key)
    return default if value is None else value
