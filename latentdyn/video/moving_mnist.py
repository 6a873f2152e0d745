"""Stochastic and deterministic Moving MNIST, generated as the SRVP code generates it.

Digits of size s x s (28 for MNIST) move on an image_size x image_size canvas (64), so the top-left corner
stays in [0, L]^2 with L = image_size - s (36). Each digit starts at integers (sx, sy), uniform in {0..L},
with an integer velocity (dx, dy), uniform in {-max_speed..max_speed}; **sx indexes rows** (the digit covers
``frame[sx:sx+s, sy:sy+s]``). Frame t records the float position rounded with Python's ``round``
(half to even); frame 0 is the initial position. When a move leaves the square, the digit bounces off the
wall it crossed; in the **stochastic** version it leaves with a completely new random velocity (SM-MNIST),
in the **deterministic** one with the same speed, reflected. Digits add up in float32, clipped at 255
(:func:`compose_frames`; :func:`compose_clips` composes a batch of clips at once, with the same result).

Randomness uses numpy's legacy ``RandomState`` stream, in the official order, so that a seed gives the
official clips bit for bit: per digit, the digit pick (training clips only), sx, sy, dx, dy, then that
digit's trajectory (the bounce draws), then the next digit. The legacy stream is required for that
reason; a ``numpy.random.Generator`` would draw other numbers.

Bounce geometry (:func:`resolve_collisions`) follows the official ``_process_collision`` step for step, not
just in exact arithmetic: every wall the position lies beyond is tried in the same pass, and all those
that the line of motion meets within the square are hit at once (a corner draws one new velocity, not two);
the contact point is computed on the line ``y = a x + b`` (``a = dy / dx``) with
the official float formulas, and the part of the move left after the contact is a ratio along one axis. The
stochastic version is sensitive to all three: the position is often an exact tie k + 1/2 for ``round``,
and one more or one fewer draw shifts every later clip of the stream. With these formulas the generator
gives the official trajectories, draws and clips bit for bit (tests/test_moving_mnist.py compares it with a
plain restatement of the official code on thousands of trajectories and test sets, and with the official
generator's own output in ``shared/fixtures/official``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import Dataset, get_worker_info

from latentdyn._checks import check_bool, check_int, check_positive_int, is_int, is_real
from latentdyn._files import atomic_write
from latentdyn._repr import fields_repr

__all__ = [
    "COLLISION_TOLERANCE",
    "Motion",
    "MovingMNIST",
    "MovingMNISTTestData",
    "MovingMNISTTestSet",
    "Trajectory",
    "compose_clips",
    "compose_frames",
    "compute_trajectory",
    "draw_trajectory",
    "load_test_set",
    "make_test_set",
    "official_test_set_name",
    "resolve_collisions",
    "save_test_set",
]

COLLISION_TOLERANCE = 1e-8
"""A coordinate counts as outside [0, L] only beyond this distance (the official tolerance)."""

_MAX_BOUNCES = 10_000  # per frame; a stochastic corner bounce repeats with probability < 1 each time


class Motion(NamedTuple):
    """State of one moving digit: float top-left corner (x indexes rows, y columns) and integer velocity."""

    x: float
    y: float
    dx: int
    dy: int


class Trajectory(NamedTuple):
    """Trajectory of one digit over T frames.

    Attributes:
        positions: int64 (T, 2), the rounded top-left corner (row sx, column sy) shown in each frame.
        velocities: int64 (T, 2), the velocity (dx, dy) that moves the digit from frame t to frame t + 1
            (after any bounce resolved at frame t).
    """

    positions: np.ndarray
    velocities: np.ndarray

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


def _randint(rng: np.random.RandomState | None, low: int, high: int) -> int:
    # None follows numpy's global stream (what `np.random.seed` seeds), as the official code does.
    source = np.random if rng is None else rng
    return int(source.randint(low, high))


def _check_rng(rng: object) -> np.random.RandomState | None:
    """``rng`` if it is a legacy ``RandomState`` (or None, numpy's global stream)."""
    if rng is not None and not isinstance(rng, np.random.RandomState):
        raise TypeError(
            f"rng: expected a numpy.random.RandomState (the legacy stream of the official generator, whose draws "
            f"a seed reproduces) or None (numpy's global stream), got {type(rng).__name__}; use "
            "np.random.RandomState(seed) rather than np.random.default_rng(seed)"
        )
    return rng


def _check_room_to_move(deterministic: bool, limit: float, moves: bool, name: str, what: str) -> None:
    """Refuse a deterministic digit that moves in a frame it fills (L = 0).

    With no room (L = 0) the official deterministic bounce loop never ends: the reflected move lands a full
    step beyond the opposite wall, and so on forever. The stochastic version draws velocities until it
    draws (0, 0), so its digit stays put; the deterministic one keeps its speed, so only a motionless digit
    (velocity (0, 0), or ``max_speed=0``) has a trajectory.
    """
    if deterministic and limit == 0 and moves:
        raise ValueError(
            f"{name}: deterministic Moving MNIST needs room to move, got {what}, so the digit fills the frame "
            "(L = image_size - digit size = 0) and its bounces, which keep the speed, would never end; use a "
            "larger image, max_speed=0 or deterministic=False (the digit then stays put)"
        )


def _outside(v: float, limit: float) -> bool:
    return v < -COLLISION_TOLERANCE or v > limit + COLLISION_TOLERANCE


def _on_row_wall(slope: float, intercept: float, wall: float, limit: float) -> tuple[float, float] | None:
    # Where the line y = slope * x + intercept meets the wall x = wall, if y is within [0, L] there.
    y = slope * wall + intercept
    return None if _outside(y, limit) else (wall, y)


def _on_column_wall(slope: float, intercept: float, wall: float, limit: float) -> tuple[float, float] | None:
    # Where the line y = slope * x + intercept meets the wall y = wall, if x is within [0, L] there.
    x = (wall - intercept) / slope
    return None if _outside(x, limit) else (x, wall)


def resolve_collisions(
    motion: Motion,
    *,
    limit: float,
    deterministic: bool,
    max_speed: int = 4,
    rng: np.random.RandomState | None = None,
) -> Motion:
    """Bounces of a digit whose last move ended at ``(x, y)``, possibly outside [0, L]^2.

    This is the official bounce loop (``_process_collision``): same walls, same draws in the same order,
    same floating-point formulas. While the position is beyond a wall (tolerance
    :data:`COLLISION_TOLERANCE`), every wall it is beyond is "hit". If the motion is parallel to an axis,
    the contact point is the position moved back onto the wall it crossed. Otherwise the motion is the line
    ``y = a x + b`` with ``a = dy / dx`` and ``b = y - a x``; each hit wall is met at ``(wall, a wall + b)``
    (x walls) or ``((wall - b) / a, wall)`` (y walls), and stays hit only if that point lies within [0, L]
    on the other axis; the walls are tried in the order x = 0, x = L, y = 0, y = L, and the last one kept
    gives the contact point. The part of the move left after the contact is ``p = (x - cx) / dx`` (or
    ``(y - cy) / dy`` when dx = 0). The stochastic version then draws **one** new velocity (dx, then dy)
    per pass, whether one wall or two (a corner) were hit; every wall still hit turns its normal component
    inward, and the digit moves by p times the velocity from the contact point. The loop repeats while the
    result is outside (a velocity drawn back into a wall, or a move longer than the box).

    Args:
        motion: the position after the move and the velocity that made it.
        limit: L, the largest coordinate of the top-left corner (image_size - digit size).
        deterministic: keep the velocity (reflected) at a bounce instead of drawing a new one.
        max_speed: new velocity components are uniform in {-max_speed..max_speed} (stochastic version).
        rng: the legacy numpy stream for the stochastic draws; None uses numpy's global stream.

    Returns:
        The position inside [0, L]^2 (up to the tolerance) and the velocity after the last bounce.

    Raises:
        TypeError: ``motion`` is not four numbers (real x, y; integer dx, dy), ``limit`` not a real number,
            ``deterministic`` not a bool, ``max_speed`` not an int, ``rng`` not a ``RandomState`` or None.
        ValueError: ``limit`` or ``max_speed`` negative, or a deterministic motion with L = 0 (no room to
            move: the bounces would never end).
        RuntimeError: a position that no move from inside the square reaches (outside across an axis along
            which the digit does not move, or no wall met within the square on the first pass; the official
            loop would never end or would fail), or more than 10,000 bounces in one frame.
    """
    if not (isinstance(motion, tuple) and len(motion) == 4):
        raise TypeError(f"motion: expected a Motion(x, y, dx, dy), got {type(motion).__name__} {motion!r}")
    x, y, dx, dy = motion
    if not (is_real(x) and is_real(y) and is_int(dx) and is_int(dy)):
        raise TypeError(f"motion: expected real x, y and integer dx, dy, got {motion!r}")
    if not is_real(limit):
        raise TypeError(f"limit: expected a real number >= 0, got {type(limit).__name__} {limit!r}")
    if not limit >= 0:
        raise ValueError(f"limit: expected a real number >= 0, got {limit!r}")
    deterministic = check_bool(deterministic, "deterministic")
    max_speed = check_positive_int(max_speed, "max_speed", minimum=0)
    moving_out = (dx, dy) != (0, 0) and (_outside(x, limit) or _outside(y, limit))
    _check_room_to_move(deterministic, limit, moving_out, "limit", f"limit={limit} with velocity {(dx, dy)}")
    return _resolve_collisions(
        Motion(float(x), float(y), int(dx), int(dy)),
        limit=float(limit),
        deterministic=deterministic,
        max_speed=max_speed,
        rng=_check_rng(rng),
    )


def _resolve_collisions(
    motion: Motion, *, limit: float, deterministic: bool, max_speed: int, rng: np.random.RandomState | None
) -> Motion:
    """Unchecked :func:`resolve_collisions`."""
    x, y, dx, dy = motion
    # The contact point survives from one pass to the next, as in the official loop: a pass whose walls
    # are all met outside the square (never seen in practice) bounces from the previous contact point.
    contact: tuple[float, float] | None = None
    # The walls x = 0, x = L, y = 0, y = L, in the order the official loop tries them.
    walls = ((_on_row_wall, 0.0), (_on_row_wall, float(limit)), (_on_column_wall, 0.0), (_on_column_wall, float(limit)))
    for _ in range(_MAX_BOUNCES):
        x_low, x_high = x < -COLLISION_TOLERANCE, x > limit + COLLISION_TOLERANCE
        y_low, y_high = y < -COLLISION_TOLERANCE, y > limit + COLLISION_TOLERANCE
        if not (x_low or x_high or y_low or y_high):
            return Motion(x, y, dx, dy)
        if dx == 0 or dy == 0:
            # Motion along one axis can only have crossed a wall across that axis.
            if (dx == 0 and (x_low or x_high)) or (dy == 0 and (y_low or y_high)):
                raise RuntimeError(f"internal: {motion} cannot have left the square [0, {limit}]^2")
            if dx == 0:
                contact = (x, 0.0 if y_low else float(limit))
            else:
                contact = (0.0 if x_low else float(limit), y)
        else:
            slope = dy / dx
            intercept = y - slope * x
            hit = [x_low, x_high, y_low, y_high]
            for i, (meet, wall) in enumerate(walls):
                if hit[i]:  # a wall stays hit only if the line meets it within the square
                    met = meet(slope, intercept, wall, limit)
                    hit[i], contact = met is not None, met or contact
            x_low, x_high, y_low, y_high = hit
        if contact is None:
            raise RuntimeError(f"internal: no border crossing found for {motion} in [0, {limit}]^2")
        cx, cy = contact
        p = (x - cx) / dx if dx != 0 else (y - cy) / dy
        if not deterministic:
            dx = _randint(rng, -max_speed, max_speed + 1)
            dy = _randint(rng, -max_speed, max_speed + 1)
        if x_low:
            dx = abs(dx)
        if x_high:
            dx = -abs(dx)
        if y_low:
            dy = abs(dy)
        if y_high:
            dy = -abs(dy)
        x, y = cx + dx * p, cy + dy * p
    raise RuntimeError(f"more than {_MAX_BOUNCES} bounces in one frame starting from {motion}")


def compute_trajectory(
    sx: int,
    sy: int,
    dx: int,
    dy: int,
    *,
    seq_len: int,
    limit: int,
    deterministic: bool,
    max_speed: int = 4,
    rng: np.random.RandomState | None = None,
) -> Trajectory:
    """Trajectory of one digit from its initial corner (sx, sy) and velocity (dx, dy).

    For t = 0..T-1: resolve the bounces of the current float position, record it rounded with Python's
    ``round`` (half to even) together with the velocity, then move by the velocity. Frame 0 shows (sx, sy).

    A deterministic digit that moves needs room: with L = 0 (a digit as large as the frame) its bounces keep
    the speed and would never end (the official loop hangs), so that case is an error. A stochastic digit
    there draws new velocities until it draws (0, 0) and stays put.

    Args:
        sx: initial row of the top-left corner, in 0..L.
        sy: initial column of the top-left corner, in 0..L.
        dx: initial row velocity.
        dy: initial column velocity.
        seq_len: T, the number of frames.
        limit: L, the largest corner coordinate (image_size - digit size).
        deterministic: reflect the velocity at bounces (True) or draw a new one (False).
        max_speed: new velocity components are uniform in {-max_speed..max_speed} (stochastic version).
        rng: the legacy numpy stream (a ``numpy.random.RandomState``) for the bounce draws; None uses numpy's
            global stream.

    Returns:
        The rounded positions and the velocities, int64 (T, 2) each.

    Raises:
        TypeError: ``sx``, ``sy``, ``dx``, ``dy``, ``seq_len``, ``limit`` or ``max_speed`` is not an int,
            ``deterministic`` is not a bool, or ``rng`` is neither a ``RandomState`` nor None.
        ValueError: ``seq_len`` < 1, ``limit`` < 0, ``max_speed`` < 0, (sx, sy) outside [0, L]^2, or a
            deterministic digit with a velocity other than (0, 0) and ``limit`` = 0.
    """
    sx, sy, dx, dy = (check_int(v, name) for v, name in ((sx, "sx"), (sy, "sy"), (dx, "dx"), (dy, "dy")))
    seq_len = check_positive_int(seq_len, "seq_len")
    limit = check_positive_int(limit, "limit", minimum=0)
    deterministic = check_bool(deterministic, "deterministic")
    max_speed = check_positive_int(max_speed, "max_speed", minimum=0)
    rng = _check_rng(rng)
    if not (0 <= sx <= limit and 0 <= sy <= limit):
        raise ValueError(f"(sx, sy): expected integers in [0, {limit}], got ({sx}, {sy})")
    _check_room_to_move(deterministic, limit, (dx, dy) != (0, 0), "limit", f"limit=0 with velocity {(dx, dy)}")
    return _compute_trajectory(
        sx, sy, dx, dy, seq_len=seq_len, limit=limit, deterministic=deterministic, max_speed=max_speed, rng=rng
    )


def _compute_trajectory(
    sx: int,
    sy: int,
    dx: int,
    dy: int,
    *,
    seq_len: int,
    limit: int,
    deterministic: bool,
    max_speed: int,
    rng: np.random.RandomState | None,
) -> Trajectory:
    """Unchecked :func:`compute_trajectory`.

    A position inside the square (up to the tolerance) needs no bounce, and :func:`_resolve_collisions` would
    return it unchanged; so it is called, with the same arguments, only for a position beyond a wall: the same
    draws and the same floats, without its set-up in every frame.
    """
    low, high = -COLLISION_TOLERANCE, limit + COLLISION_TOLERANCE  # the bounds _resolve_collisions tests
    corners: list[tuple[int, int]] = []
    speeds: list[tuple[int, int]] = []
    x, y = float(sx), float(sy)
    for _ in range(seq_len):
        if x < low or x > high or y < low or y > high:
            x, y, dx, dy = _resolve_collisions(
                Motion(x, y, dx, dy), limit=limit, deterministic=deterministic, max_speed=max_speed, rng=rng
            )
        corners.append((round(x), round(y)))
        speeds.append((dx, dy))
        x, y = x + dx, y + dy
    return Trajectory(positions=np.array(corners, dtype=np.int64), velocities=np.array(speeds, dtype=np.int64))


def draw_trajectory(
    rng: np.random.RandomState | None,
    *,
    seq_len: int,
    limit: int,
    deterministic: bool,
    max_speed: int = 4,
) -> Trajectory:
    """Random trajectory of one digit: draws sx, sy in {0..L}, then dx, dy in {-max_speed..max_speed}.

    The draws come in that order from ``rng``, followed by the bounce draws of :func:`compute_trajectory`.

    Args:
        rng: the legacy numpy stream, a ``numpy.random.RandomState`` (the official generator's, whose draws a
            seed reproduces; a ``numpy.random.Generator`` would draw other numbers); None uses numpy's global
            stream.
        seq_len: T, the number of frames.
        limit: L, the largest corner coordinate.
        deterministic: reflect the velocity at bounces (True) or draw a new one (False).
        max_speed: bound of the velocity components.

    Returns:
        The rounded positions and the velocities, int64 (T, 2) each.

    Raises:
        TypeError: ``rng`` is neither a ``RandomState`` nor None, ``seq_len``, ``limit`` or ``max_speed`` is
            not an int, or ``deterministic`` is not a bool.
        ValueError: ``seq_len`` < 1, ``limit`` < 0 or ``max_speed`` < 0, or a deterministic digit that can
            move (``max_speed`` > 0) with ``limit`` = 0 (see :func:`compute_trajectory`).
    """
    rng = _check_rng(rng)
    seq_len = check_positive_int(seq_len, "seq_len")
    limit = check_positive_int(limit, "limit", minimum=0)
    deterministic = check_bool(deterministic, "deterministic")
    max_speed = check_positive_int(max_speed, "max_speed", minimum=0)
    _check_room_to_move(deterministic, limit, max_speed > 0, "limit", f"limit=0 with max_speed={max_speed}")
    return _draw_trajectory(rng, seq_len=seq_len, limit=limit, deterministic=deterministic, max_speed=max_speed)


def _draw_trajectory(
    rng: np.random.RandomState | None, *, seq_len: int, limit: int, deterministic: bool, max_speed: int
) -> Trajectory:
    """Unchecked :func:`draw_trajectory`."""
    sx = _randint(rng, 0, limit + 1)
    sy = _randint(rng, 0, limit + 1)
    dx = _randint(rng, -max_speed, max_speed + 1)
    dy = _randint(rng, -max_speed, max_speed + 1)
    return _compute_trajectory(
        sx, sy, dx, dy, seq_len=seq_len, limit=limit, deterministic=deterministic, max_speed=max_speed, rng=rng
    )


def compose_frames(digits: Sequence[np.ndarray], positions: Sequence[np.ndarray], image_size: int) -> np.ndarray:
    """Video of digits pasted at their positions: the sum in float32, clipped at 255, cast to uint8.

    :func:`compose_clips` composes a batch of clips (digits of one size) at once, with the same frames.

    Args:
        digits: one uint8 (s, s) image per digit.
        positions: one int (T, 2) array of top-left corners (row, column) per digit.
        image_size: H = W of the canvas.

    Returns:
        uint8 (T, H, W).
    """
    seq_len = len(positions[0])
    frames = np.zeros((seq_len, image_size, image_size), dtype=np.float32)
    for digit, corners in zip(digits, positions):
        size = digit.shape[0]
        patch = digit.astype(np.float32)
        for t, (row, col) in enumerate(corners):
            frames[t, row : row + size, col : col + size] += patch
    return np.minimum(frames, 255.0).astype(np.uint8)


def compose_clips(digits: np.ndarray, positions: np.ndarray, image_size: int) -> np.ndarray:
    """A batch of videos of digits pasted at their positions, each as :func:`compose_frames` makes it.

    Same rule: a pixel is the sum of the digit pixels over it, clipped at 255 and cast to uint8. uint8 digits
    add up in uint8 with saturation (each term cut to the room left below 255), which for non-negative terms
    is the clipped sum exactly, as the (exact) float32 sums of :func:`compose_frames` give it; other dtypes add
    up in float32, digit after digit, as there. All clips are composed at once: each digit is pasted into a zero pad
    of side H + L (L = H - s), whose H x W window at offset (L - row, L - column) shows it with its corner at
    (row, column); one gather per digit slot takes the windows of all (B, T) frames.

    Args:
        digits: (B, K, s, s), the images of the K digits of each of the B clips (uint8, as MNIST).
        positions: integer (B, K, T, 2), the top-left corner (row, column) of each digit in each frame, in
            [0, L] with L = image_size - s.
        image_size: H = W of the frames.

    Returns:
        uint8 (B, T, H, W).

    Raises:
        TypeError: ``digits`` is not a numpy array, ``positions`` not an integer numpy array, or
            ``image_size`` not an int.
        ValueError: ``digits`` not (B, K, s, s) or larger than the frames, ``positions`` not (B, K, T, 2), or
            a corner outside [0, L].
    """
    image_size = check_positive_int(image_size, "image_size")
    if not isinstance(digits, np.ndarray):
        raise TypeError(f"digits: expected a numpy array (B, K, s, s), got {type(digits).__name__}")
    if digits.ndim != 4 or digits.shape[2] != digits.shape[3]:
        raise ValueError(f"digits: expected shape (B, K, s, s), got {list(digits.shape)}")
    n, k, size = digits.shape[:3]
    if size > image_size:
        raise ValueError(f"digits: digits of size {size} do not fit in image_size {image_size}")
    if not isinstance(positions, np.ndarray) or not np.issubdtype(positions.dtype, np.integer):
        got = getattr(positions, "dtype", type(positions).__name__)
        raise TypeError(f"positions: expected an integer numpy array (B, K, T, 2), got {got}")
    if positions.ndim != 4 or positions.shape[:2] != (n, k) or positions.shape[3] != 2:
        raise ValueError(f"positions: expected shape ({n}, {k}, T, 2) to match digits, got {list(positions.shape)}")
    limit = image_size - size
    if positions.size and not (positions.min() >= 0 and positions.max() <= limit):
        raise ValueError(f"positions: expected corners in [0, {limit}] (image_size - digit size)")
    seq_len = positions.shape[2]
    if k == 0:
        return np.zeros((n, seq_len, image_size, image_size), dtype=np.uint8)
    offsets = limit - positions.astype(np.intp)  # (B, K, T, 2), the window showing each digit at its corner
    pad = np.zeros((n, k, image_size + limit, image_size + limit), dtype=digits.dtype)
    pad[:, :, limit : limit + size, limit : limit + size] = digits
    windows = sliding_window_view(pad, (image_size, image_size), axis=(2, 3))  # (B, K, L + 1, L + 1, H, W)
    clips = np.arange(n)[:, None]
    layers = (windows[clips, j, offsets[:, j, :, 0], offsets[:, j, :, 1]] for j in range(k))  # (B, T, H, W) each
    if digits.dtype != np.uint8:
        total = next(layers).astype(np.float32)
        for frames in layers:
            total += frames.astype(np.float32)
        return np.minimum(total, 255.0).astype(np.uint8)
    total = next(layers)  # a copy: the gather does not return a view
    room = np.empty_like(total)
    for frames in layers:
        np.subtract(255, total, out=room)
        total += np.minimum(frames, room, out=frames)
    return np.ascontiguousarray(total)  # a no-op: the gather returns (B, T, H, W) in C order


def _check_seed(seed: object) -> int:
    value = check_positive_int(seed, "seed", minimum=0)
    if value >= 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32) (a numpy RandomState seed), got {value}")
    return value


def _no_room(pool: np.ndarray) -> str:
    """What an image size equal to the digit size is, for :func:`_check_room_to_move`."""
    size = pool.shape[1]
    return f"image_size={size}, the size of the digits ({size}×{size})"


def _as_digit_pool(digits: object, image_size: int, name: str = "digits") -> np.ndarray:
    if isinstance(digits, torch.Tensor):
        digits = digits.detach().cpu().numpy()
    if not isinstance(digits, np.ndarray):
        raise TypeError(f"{name}: expected a uint8 array (N, s, s), got {type(digits).__name__}")
    if digits.dtype != np.uint8:
        raise TypeError(f"{name}: expected dtype uint8, got {digits.dtype}")
    if digits.ndim != 3 or digits.shape[1] != digits.shape[2] or digits.shape[0] == 0:
        raise ValueError(f"{name}: expected shape (N, s, s) with N >= 1, got {list(digits.shape)}")
    if digits.shape[1] > image_size:
        raise ValueError(f"{name}: digits of size {digits.shape[1]} do not fit in image_size {image_size}")
    return np.ascontiguousarray(digits)


class MovingMNIST(Dataset[np.ndarray]):
    """Moving MNIST clips generated on the fly, uint8 (T, H, W), as the SRVP training data.

    Every item is a new random clip (the index is ignored), so every epoch sees new data. Per digit: a
    random digit of the pool, then its trajectory (:func:`draw_trajectory`). With numpy's global stream
    seeded by ``np.random.seed(s)`` (``seed=None``), or with ``seed=s``, the first clips are the official
    generator's for that seed.

    Random streams and DataLoader workers: with ``seed=None`` the clips follow numpy's global stream, which
    PyTorch reseeds in every worker (distinct per worker and per epoch, reproducible after
    ``torch.manual_seed``). With an integer ``seed`` the dataset owns a ``RandomState(seed)`` in the main
    process; inside a worker it switches to a stream seeded by ``(seed, torch worker seed)``, which
    is again distinct per worker and per epoch and reproducible from ``seed`` and torch's seed. No
    ``worker_init_fn`` is needed.

    Args:
        digits: the pool, uint8 (N, s, s) (numpy array or tensor), e.g. MNIST train images.
        seq_len: T, frames per clip.
        num_digits: digits per clip.
        max_speed: velocity components are uniform in {-max_speed..max_speed}.
        deterministic: reflect velocities at bounces instead of drawing new ones.
        image_size: H = W of the frames.
        length: the virtual number of items (``len(dataset)``).
        seed: seed of the dataset's own stream; None follows numpy's global stream.

    Raises:
        TypeError: ``digits`` is not a uint8 array or tensor, a size, count, speed or seed is not an int, or
            ``deterministic`` is not a bool.
        ValueError: a bad shape, a size or count below 1, a negative speed, a seed outside [0, 2**32), or a
            deterministic set whose digits fill the frame (``image_size`` = s) and can move (``max_speed`` > 0):
            the official deterministic bounces never end there (see :func:`compute_trajectory`).
    """

    def __init__(
        self,
        digits: np.ndarray | torch.Tensor,
        *,
        seq_len: int,
        num_digits: int = 2,
        max_speed: int = 4,
        deterministic: bool = False,
        image_size: int = 64,
        length: int = 500_000,
        seed: int | None = None,
    ) -> None:
        self.seq_len = check_positive_int(seq_len, "seq_len")
        self.num_digits = check_positive_int(num_digits, "num_digits")
        self.max_speed = check_positive_int(max_speed, "max_speed", minimum=0)
        self.image_size = check_positive_int(image_size, "image_size")
        self.length = check_positive_int(length, "length")
        self.digits = _as_digit_pool(digits, self.image_size)
        self.deterministic = check_bool(deterministic, "deterministic")
        self.limit: int = self.image_size - int(self.digits.shape[1])
        _check_room_to_move(self.deterministic, self.limit, self.max_speed > 0, "image_size", _no_room(self.digits))
        if seed is not None:
            _check_seed(seed)
        self.seed = seed
        self._rng = None if seed is None else np.random.RandomState(seed)
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return self.length

    def _stream(self) -> np.random.RandomState | None:
        info = get_worker_info()
        if self.seed is None or info is None:
            return self._rng
        if self._worker_seed != info.seed:
            # torch's worker seed is a 64-bit integer; RandomState takes a list of 32-bit words.
            words = [self.seed, info.seed & 0xFFFFFFFF, (info.seed >> 32) & 0xFFFFFFFF]
            self._rng = np.random.RandomState(words)
            self._worker_seed = info.seed
        return self._rng

    def __getitem__(self, index: int) -> np.ndarray:
        """A new random clip, uint8 (T, H, W); ``index`` is ignored."""
        rng = self._stream()
        chosen: list[np.ndarray] = []
        positions: list[np.ndarray] = []
        for _ in range(self.num_digits):
            chosen.append(self.digits[_randint(rng, 0, len(self.digits))])
            trajectory = _draw_trajectory(
                rng,
                seq_len=self.seq_len,
                limit=self.limit,
                deterministic=self.deterministic,
                max_speed=self.max_speed,
            )
            positions.append(trajectory.positions)
        return compose_frames(chosen, positions, self.image_size)


@dataclass(frozen=True, eq=False)  # (array fields: == raised; identity instead)
class MovingMNISTTestData:
    """A fixed Moving MNIST test set, in the official file's layout (time-major).

    Attributes:
        sequences: uint8 (T, N, H, W), clip i is ``sequences[:, i]``.
        latents: int64 (T, N, n_digits, 4), per frame and digit: rounded sx, sy and the current dx, dy.
        labels: int (N, n_digits), the class of each digit.
        digits: uint8 (N, n_digits, s, s), the digit images.
    """

    sequences: np.ndarray
    latents: np.ndarray
    labels: np.ndarray
    digits: np.ndarray

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


_TEST_KEYS = ("sequences", "latents", "labels", "digits")


def official_test_set_name(*, deterministic: bool, num_digits: int = 2, image_size: int = 64) -> str:
    """The official file name: ``smmnist_test_2digits_64.npz`` (stochastic) or ``mmnist_test_2digits_64.npz``.

    Args:
        deterministic: the deterministic variant (``mmnist``) rather than the stochastic one (``smmnist``).
        num_digits: digits per video.
        image_size: frame size H = W.

    Returns:
        ``<prefix>_test_<num_digits>digits_<image_size>.npz``.
    """
    prefix = "mmnist" if deterministic else "smmnist"
    return f"{prefix}_test_{num_digits}digits_{image_size}.npz"


def make_test_set(
    digits: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    seq_len: int,
    deterministic: bool,
    num_digits: int = 2,
    seed: int = 42,
    max_speed: int = 4,
    image_size: int = 64,
) -> MovingMNISTTestData:
    """Fixed Moving MNIST test set, as the official ``make_test_set`` builds it.

    A ``RandomState(seed)`` (the stream ``np.random.seed(seed)`` gives, without touching the global one)
    permutes the N_digits digits once; sequence i (of N = N_digits // num_digits) uses the permuted digits
    ``num_digits * i + j``, j = 0..num_digits-1, so no digit appears twice. The trajectories (initial corner,
    velocity, bounces) are drawn from the same stream, digit after digit.

    Args:
        digits: uint8 (N_digits, s, s), e.g. the MNIST test images.
        labels: int (N_digits,), their classes.
        seq_len: T, frames per sequence (the README uses 25 for SM-MNIST, 100 for deterministic MMNIST).
        deterministic: reflect velocities at bounces instead of drawing new ones.
        num_digits: digits per sequence.
        seed: the seed (42 in the official script).
        max_speed: velocity components are uniform in {-max_speed..max_speed}.
        image_size: H = W of the frames.

    Returns:
        The sequences uint8 (T, N, H, W), latents int64 (T, N, num_digits, 4), labels int64
        (N, num_digits) and digits uint8 (N, num_digits, s, s).

    Raises:
        TypeError: ``digits`` is not uint8, ``labels`` not integer, a size, count, speed or seed not an int, or
            ``deterministic`` not a bool.
        ValueError: bad shapes, fewer digits than ``num_digits``, a size or count below 1, a negative speed, a
            seed outside [0, 2**32), or a deterministic set whose digits fill the frame (``image_size`` = s)
            and can move (``max_speed`` > 0): the official deterministic bounces never end there.
    """
    check_positive_int(seq_len, "seq_len")
    check_positive_int(num_digits, "num_digits")
    check_positive_int(max_speed, "max_speed", minimum=0)
    check_positive_int(image_size, "image_size")
    deterministic = check_bool(deterministic, "deterministic")
    _check_seed(seed)
    pool = _as_digit_pool(digits, image_size)
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels: expected an integer array (N,), got {getattr(labels, 'dtype', type(labels))}")
    if labels.shape != (len(pool),):
        raise ValueError(f"labels: expected shape ({len(pool)},) to match digits, got {list(labels.shape)}")
    n_sequences = len(pool) // num_digits
    if n_sequences == 0:
        raise ValueError(f"digits: need at least num_digits={num_digits} digits, got {len(pool)}")
    limit = image_size - pool.shape[1]
    _check_room_to_move(deterministic, limit, max_speed > 0, "image_size", _no_room(pool))
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(pool))
    sequences = np.empty((seq_len, n_sequences, image_size, image_size), dtype=np.uint8)
    latents = np.empty((seq_len, n_sequences, num_digits, 4), dtype=np.int64)
    chosen = order[: n_sequences * num_digits].reshape(n_sequences, num_digits)
    for i in range(n_sequences):
        positions = []
        for j in range(num_digits):
            trajectory = _draw_trajectory(
                rng, seq_len=seq_len, limit=limit, deterministic=deterministic, max_speed=max_speed
            )
            latents[:, i, j, :2] = trajectory.positions
            latents[:, i, j, 2:] = trajectory.velocities
            positions.append(trajectory.positions)
        sequences[:, i] = compose_frames([pool[k] for k in chosen[i]], positions, image_size)
    return MovingMNISTTestData(
        sequences=sequences,
        latents=latents,
        labels=labels[chosen].astype(np.int64),
        digits=pool[chosen],
    )


def _validated(arrays: dict[str, np.ndarray], where: str) -> MovingMNISTTestData:
    """The four test-set arrays, checked for dtypes and consistent shapes; ``where`` prefixes messages."""

    def fail(key: str, expected: str) -> ValueError:
        got = arrays[key]
        return ValueError(f"{where}: key {key!r}: expected {expected}, got {got.dtype} {list(got.shape)}")

    sequences, latents, labels, digits = (arrays[key] for key in _TEST_KEYS)
    if sequences.dtype != np.uint8 or sequences.ndim != 4 or sequences.shape[2] != sequences.shape[3]:
        raise fail("sequences", "uint8 (T, N, H, W) with H = W")
    seq_len, n, size = sequences.shape[0], sequences.shape[1], sequences.shape[2]
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 2 or labels.shape[0] != n:
        raise fail("labels", f"integer (N, n_digits) with N = {n}")
    k = labels.shape[1]
    if not np.issubdtype(latents.dtype, np.integer) or latents.shape != (seq_len, n, k, 4):
        raise fail("latents", f"integer {[seq_len, n, k, 4]}")
    if digits.dtype != np.uint8 or digits.ndim != 4 or digits.shape[:2] != (n, k) or digits.shape[2] != digits.shape[3]:
        raise fail("digits", f"uint8 (N, n_digits, s, s) with N = {n}, n_digits = {k}")
    if digits.shape[2] > size:
        raise fail("digits", f"digits no larger than the frames ({size})")
    return MovingMNISTTestData(sequences=sequences, latents=latents, labels=labels, digits=digits)


def save_test_set(
    path: str | os.PathLike[str],
    data: MovingMNISTTestData,
    *,
    overwrite: bool = False,
    compress: bool = True,
) -> Path:
    """Write a test set as an ``.npz`` file with keys sequences, latents, labels, digits.

    The arrays go to a temporary file in the same directory, renamed to ``path`` once complete, so an
    interrupted run never leaves a partial file behind.

    Args:
        path: the output file (parent directories are created).
        data: the arrays.
        overwrite: replace an existing file.
        compress: zip-deflate the arrays (``np.savez_compressed``; the clips are mostly black, so this is
            much smaller), else ``np.savez``.

    Returns:
        The path written.

    Raises:
        TypeError: ``data`` is not a :class:`MovingMNISTTestData` of numpy arrays; ``overwrite`` or ``compress``
            is not a bool (a string ``"False"`` would read as True).
        ValueError: an array has a wrong dtype or shape (as :func:`load_test_set` checks).
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        OSError: the file system refused (a full disk, a read-only folder), naming ``path``; an existing file is
            left as it was.
    """
    overwrite = check_bool(overwrite, "overwrite", "True: replace an existing file")
    compress = check_bool(compress, "compress")
    if not isinstance(data, MovingMNISTTestData):
        raise TypeError(f"data: expected a MovingMNISTTestData, got {type(data).__name__}")
    arrays = {key: getattr(data, key) for key in _TEST_KEYS}
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):
        raise TypeError("data: every field must be a numpy array")
    _validated(arrays, "data")
    final = Path(path)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
    save = np.savez_compressed if compress else np.savez
    return atomic_write(final, lambda stream: save(stream, **arrays))


def load_test_set(path: str | os.PathLike[str]) -> MovingMNISTTestData:
    """Read and validate a test set written by :func:`save_test_set` or by the official script.

    Args:
        path: the ``.npz`` file.

    Returns:
        The arrays, checked: sequences uint8 (T, N, H, W), latents integer (T, N, n_digits, 4), labels integer
        (N, n_digits), digits uint8 (N, n_digits, s, s).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an npz file (empty, truncated or damaged included), a key missing or unreadable, or a
            wrong dtype or shape; the message names the file and the key.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such test-set file (make one with `python -m examples.srvp.data`)")
    from latentdyn.video.datasets._common import read_npz

    arrays = read_npz(file, _TEST_KEYS)
    return _validated(arrays, str(file))


class MovingMNISTTestSet(Dataset[np.ndarray]):
    """Clips of a fixed Moving MNIST test set: item i is ``sequences[:seq_len, i]``, uint8 (T, H, W).

    Args:
        source: a :class:`MovingMNISTTestData`, or the path of a file written by :func:`save_test_set`.
        seq_len: keep the first T frames of each clip (test.py's ``nt_gen``); None keeps them all.

    Raises:
        TypeError: ``source`` is neither test data nor a path.
        ValueError: ``seq_len`` is not in 1..T, or the file is invalid (see :func:`load_test_set`).
    """

    def __init__(self, source: MovingMNISTTestData | str | os.PathLike[str], *, seq_len: int | None = None) -> None:
        if isinstance(source, (str, os.PathLike)):
            source = load_test_set(source)
        elif not isinstance(source, MovingMNISTTestData):
            raise TypeError(f"source: expected MovingMNISTTestData or a path, got {type(source).__name__}")
        self.data = source
        available = source.sequences.shape[0]
        if seq_len is not None:
            check_positive_int(seq_len, "seq_len")
            if seq_len > available:
                raise ValueError(f"seq_len: expected at most the {available} stored frames, got {seq_len}")
        self.seq_len: int = int(available) if seq_len is None else seq_len

    def __len__(self) -> int:
        return int(self.data.sequences.shape[1])

    def __getitem__(self, index: int) -> np.ndarray:
        """Clip ``index``, uint8 (T, H, W).

        Raises:
            TypeError: ``index`` is not an int (a bool, which NumPy reads as a mask, included).
            IndexError: ``index`` is outside ``[-len, len)``.
        """
        index = check_int(index, "index")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        return np.ascontiguousarray(self.data.sequences[: self.seq_len, index])
