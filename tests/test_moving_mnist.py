"""Moving MNIST: bounce geometry on hand-computed cases, generator properties, fidelity to the official
generator, the fixed test set (file round trip), DataLoader worker streams, collation and the CLI."""

from __future__ import annotations

import gzip
import io
import re
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from shared_fixtures import FIXTURES, needs
from torch.utils.data import DataLoader

from examples.srvp import data as data_cli
from examples.srvp.datasets import generate_clips
from latentdyn.video.collate import collate_videos
from latentdyn.video.mnist import load_embedded_digits, mnist_raw_dir
from latentdyn.video.moving_mnist import (
    COLLISION_TOLERANCE,
    Motion,
    MovingMNIST,
    MovingMNISTTestData,
    MovingMNISTTestSet,
    compose_clips,
    compose_frames,
    compute_trajectory,
    draw_trajectory,
    load_test_set,
    make_test_set,
    official_test_set_name,
    resolve_collisions,
    save_test_set,
)

FIXTURE = FIXTURES / "official" / "inputs.pt"
needs_fixture = needs(FIXTURE, "official SRVP fixture")


class ScriptedStream(np.random.RandomState):
    """A RandomState whose ``randint`` returns scripted values (and records its calls)."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)
        self.calls: list[tuple[int, int]] = []

    def randint(self, low: int, high: int | None = None, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        assert high is not None
        self.calls.append((low, high))
        return self.values.pop(0)


class CountingStream(np.random.RandomState):
    """A RandomState that counts its ``randint`` calls."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.count = 0

    def randint(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        self.count += 1
        return int(super().randint(*args, **kwargs))  # type: ignore[arg-type]


def trajectory(sx: int, sy: int, dx: int, dy: int, t: int = 3, limit: int = 36) -> list[tuple[int, ...]]:
    traj = compute_trajectory(sx, sy, dx, dy, seq_len=t, limit=limit, deterministic=True)
    return [tuple(int(v) for v in (*p, *v)) for p, v in zip(traj.positions, traj.velocities)]


# ------------------------------------------------------------------------------------ hand-computed bounces
def test_free_motion_and_frame_zero_is_the_start() -> None:
    assert trajectory(3, 5, 2, -1) == [(3, 5, 2, -1), (5, 4, 2, -1), (7, 3, 2, -1)]


def test_axis_parallel_bounce_on_the_high_wall() -> None:
    # 34 -> 38 crosses x = 36 halfway through the move: back by 2 from the wall.
    assert trajectory(34, 10, 4, 0) == [(34, 10, 4, 0), (34, 10, -4, 0), (30, 10, -4, 0)]


def test_axis_parallel_bounce_on_the_low_wall_in_y() -> None:
    # y: 1 -> -2 crosses y = 0 after a third of the move, then travels 2 back.
    assert trajectory(7, 1, 0, -3) == [(7, 1, 0, -3), (7, 2, 0, 3), (7, 5, 0, 3)]


def test_oblique_bounce() -> None:
    # (34, 10) + (4, 2) = (38, 12): crosses x = 36 at (36, 11), half of the move left: (36 - 2, 11 + 1).
    assert trajectory(34, 10, 4, 2) == [(34, 10, 4, 2), (34, 12, -4, 2), (30, 14, -4, 2)]


def test_exact_corner_bounce() -> None:
    # (34, 34) + (4, 4) passes through the corner (36, 36) halfway: both components reverse.
    assert trajectory(34, 34, 4, 4) == [(34, 34, 4, 4), (34, 34, -4, -4), (30, 30, -4, -4)]


def test_two_walls_in_one_frame_near_a_corner() -> None:
    # (35, 33) moving (3, 4): hits x = 36 after 1/3 of the frame at y = 34 1/3, goes back at -3 and hits
    # y = 36 after another 5/12 frame at x = 34.75; the last 1/4 frame brings it to (34, 35).
    out = resolve_collisions(Motion(38.0, 37.0, 3, 4), limit=36, deterministic=True)
    assert out.dx == -3 and out.dy == -4
    assert out.x == pytest.approx(34.0, abs=1e-12) and out.y == pytest.approx(35.0, abs=1e-12)


def test_repeated_bounce_when_the_move_is_longer_than_the_box() -> None:
    # L = 2: from 1 moving +4: up to 2 (1 unit), down to 0 (2 units), up to 1 (1 unit).
    assert trajectory(0, 1, 0, 4, t=2, limit=2) == [(0, 1, 0, 4), (0, 1, 0, 4)]
    out = resolve_collisions(Motion(0.0, 5.0, 0, 4), limit=2, deterministic=True)
    assert out == Motion(0.0, 1.0, 0, 4)


def test_stochastic_bounce_draws_a_new_velocity_and_points_it_inward() -> None:
    # (34, 10) + (4, 0) -> (38, 10): contact (36, 10) with p = 1/2. New draw (3, -2): dx forced to -3.
    # Position (36 - 1.5, 10 - 1) = (34.5, 9), shown as round(34.5) = 34 (half to even), then
    # (31.5, 7) -> 32.
    stream = ScriptedStream([3, -2])
    traj = compute_trajectory(34, 10, 4, 0, seq_len=3, limit=36, deterministic=False, max_speed=4, rng=stream)
    assert traj.positions.tolist() == [[34, 10], [34, 9], [32, 7]]
    assert traj.velocities.tolist() == [[4, 0], [-3, -2], [-3, -2]]
    assert stream.calls == [(-4, 5), (-4, 5)]


def test_stochastic_bounce_redraws_while_the_new_velocity_leaves_again() -> None:
    # At y = 0 moving along the wall (-2, 0), hitting x = 0 halfway: contact (0, 0), p = 1/2. Pass 1: draw
    # (2, -3), dx forced to +2, position (1, -1.5) is out through y = 0. Pass 2: the move crosses y = 0 at
    # the same contact (0, 0), p = 1/2; draw (-1, 4), dy forced to +4, dx = -1 kept: (-0.5, 2) is out
    # through x = 0. Pass 3: contact (0, 0) again; draw (1, 1), dx forced to +1: (0.5, 0.5).
    stream = ScriptedStream([2, -3, -1, 4, 1, 1])
    out = resolve_collisions(Motion(-1.0, 0.0, -2, 0), limit=36, deterministic=False, rng=stream)
    assert len(stream.calls) == 6
    assert out.dx == 1 and out.dy == 1
    assert out.x == pytest.approx(0.5) and out.y == pytest.approx(0.5)


def test_stochastic_corner_bounce_draws_one_velocity_for_both_walls() -> None:
    # (-2, -2) after the move (-4, -4) from (2, 2): beyond x = 0 and y = 0. The line y = x meets x = 0 at
    # y = 0 and y = 0 at x = 0, both inside [0, 36], so both walls are hit in the same pass, at the
    # contact (0, 0), with p = (-2 - 0) / -4 = 1/2 of the move left. One draw (-3, -2); both components
    # turn inward: (3, 2). Position (0 + 3/2, 0 + 2/2) = (1.5, 1), inside: done after 2 draws, the scripted
    # (1, 1) is left unused. (A corner taken as two one-wall bounces would draw twice.)
    stream = ScriptedStream([-3, -2, 1, 1])
    out = resolve_collisions(Motion(-2.0, -2.0, -4, -4), limit=36, deterministic=False, rng=stream)
    assert out == Motion(1.5, 1.0, 3, 2)
    assert stream.calls == [(-4, 5), (-4, 5)] and stream.values == [1, 1]


def test_remaining_fraction_is_measured_along_one_axis() -> None:
    # (35, 1) moving (4, 4) ends at (39, 5), beyond x = 36. Line y = x - 34 (a = 1, b = 5 - 39 = -34,
    # all exact): contact (36, 2). p = (39 - 36) / 4 = 0.75 exactly. Draw (-2, -2), dx already inward:
    # (36 - 1.5, 2 - 1.5) = (34.5, 0.5), both exact ties, shown with round() half to even as (34, 0).
    # (p as a ratio of Euclidean lengths, sqrt(18) / sqrt(32), is not exactly 0.75: y came out 0.5 + 2e-16
    # and was shown as 1.)
    stream = ScriptedStream([-2, -2])
    traj = compute_trajectory(35, 1, 4, 4, seq_len=2, limit=36, deterministic=False, rng=stream)
    assert traj.positions.tolist() == [[35, 1], [34, 0]]
    assert traj.velocities.tolist() == [[4, 4], [-2, -2]]
    out = resolve_collisions(Motion(39.0, 5.0, 4, 4), limit=36, deterministic=False, rng=ScriptedStream([-2, -2]))
    assert out == Motion(34.5, 0.5, -2, -2)


def test_contact_point_uses_the_official_line_form_and_its_rounding() -> None:
    # (1, 34) moving (3, 4) ends at (4, 38), beyond y = 36 only. In exact arithmetic the line crosses
    # y = 36 at x = 2.5. The official code computes a = 4 / 3, b = 38 - a * 4, x = (36 - b) / a in float64:
    # a = 4/3 - 2**-52 / 3; a * 4 is exact; 38 - a * 4 = 98/3 + 4 * 2**-52 / 3 rounds to the double just
    # below 98/3 (spacing 2**-47 there), so 36 - b is about 2.4e-15 above 10/3, and dividing by a (below 4/3)
    # gives x = 2.5 + 4 * 2**-51 = 2.5000000000000018 (0x1.4000000000004p+1).
    # p = (4 - x) / 3 = 0.4999999999999994. Draw (0, -4), dy already inward: x stays there and
    # y = 36 - 4 * p = 34.0 (34.0000000000000024 rounds to 34). The frame shows round(x) = 3, where the exact
    # crossing 2.5 (or the slope form 4 + (36 - 38) / a = 2.4999999999999996) would show 2.
    out = resolve_collisions(Motion(4.0, 38.0, 3, 4), limit=36, deterministic=False, rng=ScriptedStream([0, -4]))
    assert out == Motion(2.5 + 4 * 2**-51, 34.0, 0, -4)
    traj = compute_trajectory(1, 34, 3, 4, seq_len=3, limit=36, deterministic=False, rng=ScriptedStream([0, -4]))
    assert traj.positions.tolist() == [[1, 34], [3, 34], [3, 30]]
    assert traj.velocities.tolist() == [[3, 4], [0, -4], [0, -4]]


def test_a_digit_can_stop() -> None:
    traj = compute_trajectory(36, 3, 1, 1, seq_len=4, limit=36, deterministic=False, rng=ScriptedStream([0, 0]))
    # (37, 4): contact (36, 3), new velocity 0: the digit stays there for good.
    assert traj.positions.tolist() == [[36, 3]] * 4 and traj.velocities.tolist() == [[1, 1]] + [[0, 0]] * 3


def test_resolve_collisions_errors() -> None:
    with pytest.raises(RuntimeError, match="cannot have left the square"):
        resolve_collisions(Motion(40.0, 3.0, 0, 1), limit=36, deterministic=True)
    # Beyond x = 0 and y = 36 on the line y = x + 55, which meets x = 0 at y = 55 and y = 36 at x = -19:
    # no move from inside the square ends there.
    with pytest.raises(RuntimeError, match="no border crossing found"):
        resolve_collisions(Motion(-5.0, 50.0, 1, 1), limit=36, deterministic=True)


def test_compute_trajectory_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"\(sx, sy\): expected integers in \[0, 36\], got \(37, 0\)"):
        compute_trajectory(37, 0, 1, 1, seq_len=3, limit=36, deterministic=True)
    with pytest.raises(ValueError, match="seq_len: expected an int >= 1, got 0"):
        compute_trajectory(0, 0, 1, 1, seq_len=0, limit=36, deterministic=True)


# ----------------------------------------------------------------------------------------------- properties
@given(seed=st.integers(0, 2**32 - 1), deterministic=st.booleans(), max_speed=st.integers(0, 6))
def test_positions_stay_in_the_box(seed: int, deterministic: bool, max_speed: int) -> None:
    rng = np.random.RandomState(seed)
    traj = draw_trajectory(rng, seq_len=60, limit=36, deterministic=deterministic, max_speed=max_speed)
    assert traj.positions.dtype == np.int64 and traj.positions.shape == (60, 2)
    assert traj.positions.min() >= 0 and traj.positions.max() <= 36
    assert np.abs(traj.velocities).max() <= max_speed


@given(seed=st.integers(0, 2**32 - 1))
def test_deterministic_version_keeps_speeds(seed: int) -> None:
    traj = draw_trajectory(np.random.RandomState(seed), seq_len=80, limit=36, deterministic=True)
    speeds = np.abs(traj.velocities)
    assert (speeds == speeds[0]).all()
    # Reflections only: a component changes sign only when the digit is at the matching wall.
    flips = np.sign(traj.velocities[1:]) != np.sign(traj.velocities[:-1])
    rows, axes = np.nonzero(flips)
    at_wall = traj.positions[rows + 1, axes]
    assert np.isin(at_wall, np.arange(0, 5)).sum() + np.isin(at_wall, np.arange(32, 37)).sum() == len(rows)


@given(seed=st.integers(0, 2**32 - 1))
@example(seed=70509)  # positions of -1.8e-15 after a bounce (found with HYPOTHESIS_PROFILE=explore)
@example(seed=27824)
def test_stochastic_version_changes_velocity_only_at_bounces(seed: int) -> None:
    stream = CountingStream(seed)
    motion = Motion(float(stream.randint(0, 37)), float(stream.randint(0, 37)), 4, -3)
    for _ in range(40):
        before = stream.count
        tol = COLLISION_TOLERANCE  # (a position 1e-15 out after a bounce counts as inside, as documented)
        inside = -tol <= motion.x <= 36 + tol and -tol <= motion.y <= 36 + tol
        resolved = resolve_collisions(motion, limit=36, deterministic=False, rng=stream)
        if inside:
            assert resolved == motion and stream.count == before
        else:
            assert stream.count > before and (stream.count - before) % 2 == 0
        assert -1e-8 <= resolved.x <= 36 + 1e-8 and -1e-8 <= resolved.y <= 36 + 1e-8
        motion = Motion(resolved.x + resolved.dx, resolved.y + resolved.dy, resolved.dx, resolved.dy)


def test_compose_frames_adds_and_clips() -> None:
    a = np.full((2, 2), 100, np.uint8)
    b = np.full((2, 2), 200, np.uint8)
    frames = compose_frames([a, a, b], [np.array([[0, 0]]), np.array([[1, 1]]), np.array([[1, 0]])], 4)
    expected = np.zeros((1, 4, 4), np.int64)
    expected[0, 0:2, 0:2] += 100
    expected[0, 1:3, 1:3] += 100
    expected[0, 1:3, 0:2] += 200
    np.testing.assert_array_equal(frames, np.minimum(expected, 255))
    assert frames.dtype == np.uint8 and frames[0, 1, 1] == 255 and frames[0, 1, 2] == 100


# ------------------------------------------------------------------------------------------ official output
@needs_fixture
def test_reproduces_the_official_generator_bit_for_bit() -> None:
    inputs = torch.load(FIXTURE, weights_only=True)
    glyphs, expected = inputs["glyphs"].numpy(), inputs["x_uint8"].numpy()  # (10, 28, 28), (15, 2, 64, 64)
    # The official training-mode generator after np.random.seed(0), items 0 and 1.
    ds = MovingMNIST(glyphs, seq_len=15, seed=0)
    np.testing.assert_array_equal(np.stack([ds[0], ds[1]], axis=1), expected)
    # The same through numpy's global stream (seed=None), leaving it where the official code would.
    state = np.random.get_state()
    try:
        np.random.seed(0)
        ds = MovingMNIST(glyphs, seq_len=15)
        np.testing.assert_array_equal(np.stack([ds[0], ds[1]], axis=1), expected)
    finally:
        np.random.set_state(state)
    # And the official collation.
    np.testing.assert_array_equal(collate_videos([ds_item for ds_item in expected.transpose(1, 0, 2, 3)]), inputs["x"])


# --------------------------------------------------- the tests' own reference, re-derived from the official facts
# REFERENCE FOR THE TESTS BELOW, independent of latentdyn. It re-derives, in its own code, the facts of the
# official generator (edouardelasalles/srvp, data/mmnist.py `_compute_trajectory` / `_process_collision` and
# preprocessing/mmnist/make_test_set.py, commit 05661fa), the source of these facts: the same comparisons with
# the same tolerance, the same float formulas, the same draws from numpy's legacy stream in the same order, so
# that its output is bit-identical. No code of it is copied. It is slow on purpose; do not "simplify" it
# towards the module's code.
REF_EPS = 1e-8


def ref_walls(L: int) -> tuple[tuple[int, int, int], ...]:
    # One row per wall: (axis it stops, 0 for x and 1 for y; its coordinate on that axis; the sign that the
    # velocity component along that axis gets after bouncing off it). The rows are in the order in which the
    # walls are tried (x = 0, x = L, y = 0, y = L): when several are crossed, the crossing point is the last
    # one's. Row 2 * axis is the low wall of an axis.
    return ((0, 0, 1), (0, L, -1), (1, 0, 1), (1, L, -1))


def ref_beyond(pos: list[float], walls: tuple[tuple[int, int, int], ...]) -> list[bool]:
    # Whether the position is more than REF_EPS past each wall.
    return [pos[axis] < bound - REF_EPS if sign > 0 else pos[axis] > bound + REF_EPS for axis, bound, sign in walls]


def ref_bounce(
    sx: float, sy: float, dx: int, dy: int, L: int, deterministic: bool, max_speed: int, rng: np.random.RandomState
) -> tuple[float, float, int, int]:
    walls = ref_walls(L)
    pos: list[float] = [sx, sy]
    vel = [dx, dy]
    beyond = ref_beyond(pos, walls)
    # The crossing point is kept from one pass to the next: a pass that finds none reuses the previous one.
    crossing: list[float] | None = None
    while any(beyond):
        if vel[0] == 0 or vel[1] == 0:
            # Motion along one axis (y when dx = 0, whatever dy): the crossing point is the position put back
            # on that axis's low wall if it is beyond it, else on its high wall.
            axis = 1 if vel[0] == 0 else 0
            crossing = list(pos)
            crossing[axis] = 0 if beyond[2 * axis] else L
        else:
            # The line of motion y = a x + b; a wall stays crossed only if the line meets it within
            # [0, L] (up to REF_EPS) on the other axis.
            a = vel[1] / vel[0]
            b = pos[1] - a * pos[0]
            for k, (axis, bound, _) in enumerate(walls):
                if not beyond[k]:
                    continue
                other = a * bound + b if axis == 0 else (bound - b) / a
                beyond[k] = -REF_EPS <= other <= L + REF_EPS
                if beyond[k]:
                    crossing = [bound, other] if axis == 0 else [other, bound]
        assert crossing is not None, "the official code would fail here too"
        # The fraction of the move left after the crossing, measured along x unless dx = 0.
        along = 0 if vel[0] != 0 else 1
        p = (pos[along] - crossing[along]) / vel[along]
        if not deterministic:
            vel = [rng.randint(-max_speed, max_speed + 1) for _ in range(2)]  # dx first, then dy
        for k, (axis, _, sign) in enumerate(walls):
            if beyond[k]:
                vel[axis] = abs(vel[axis]) if sign > 0 else -abs(vel[axis])
        pos = [crossing[axis] + vel[axis] * p for axis in range(2)]
        beyond = ref_beyond(pos, walls)
    return pos[0], pos[1], vel[0], vel[1]


def ref_trajectory(
    rng: np.random.RandomState, T: int, L: int, deterministic: bool, max_speed: int = 4
) -> list[list[int]]:
    sx: float = rng.randint(0, L + 1)
    sy: float = rng.randint(0, L + 1)
    dx = rng.randint(-max_speed, max_speed + 1)
    dy = rng.randint(-max_speed, max_speed + 1)
    rows = []
    for _ in range(T):
        sx, sy, dx, dy = ref_bounce(sx, sy, dx, dy, L, deterministic, max_speed, rng)
        rows.append([round(sx), round(sy), dx, dy])
        sx = sx + dx
        sy = sy + dy
    return rows


def ref_paste(images: list[np.ndarray], trajectories: list[list[list[int]]], T: int) -> np.ndarray:
    video = np.zeros((T, 64, 64), dtype=np.float32)
    for image, rows in zip(images, trajectories):
        for t in range(T):
            sx, sy = rows[t][0], rows[t][1]
            video[t, sx : sx + image.shape[0], sy : sy + image.shape[1]] += image
    video[video > 255] = 255
    return video.astype(np.uint8)


def ref_training_clip(
    pool: np.ndarray, rng: np.random.RandomState, T: int, deterministic: bool, num_digits: int = 2
) -> np.ndarray:
    images, trajectories = [], []
    for _ in range(num_digits):
        images.append(pool[rng.randint(len(pool))])
        trajectories.append(ref_trajectory(rng, T, 64 - pool.shape[1], deterministic))
    return ref_paste(images, trajectories, T)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("seq_len", [25, 100])
def test_trajectories_match_the_reference_of_the_official_code(seq_len: int, deterministic: bool) -> None:
    n, differing, bounced = 2000, [], 0
    for seed in range(n):
        ours_rng, ref_rng = np.random.RandomState(seed), np.random.RandomState(seed)
        ours = draw_trajectory(ours_rng, seq_len=seq_len, limit=36, deterministic=deterministic)
        ref = np.array(ref_trajectory(ref_rng, seq_len, 36, deterministic), dtype=np.int64)
        # Same rows, and the same number of draws taken from the stream (its position afterwards).
        same_stream = ours_rng.get_state()[2] == ref_rng.get_state()[2]
        same_stream = same_stream and (ours_rng.get_state()[1] == ref_rng.get_state()[1]).all()
        if not (np.array_equal(ours.positions, ref[:, :2]) and np.array_equal(ours.velocities, ref[:, 2:])):
            differing.append(seed)
        elif not same_stream:
            differing.append(seed)
        bounced += bool((np.diff(ref[:, 2:], axis=0) != 0).any())
    assert differing == [], f"{len(differing)} of {n} trajectories differ, seeds {differing[:10]}"
    # The comparison is only worth something if it covers many bounces.
    assert bounced > n // 2


def test_make_test_set_matches_the_reference_of_the_official_script() -> None:
    # The official recipe: np.random.seed(42), one permutation of the digits, then sequence i pastes the
    # permuted digits 2i and 2i + 1 along trajectories drawn one after the other from the same stream.
    digits = load_embedded_digits("test")
    for seq_len, deterministic, n_digits in ((25, False, 1000), (100, True, 120)):
        images, labels = digits.images[:n_digits], digits.labels[:n_digits]
        data = make_test_set(images, labels, seq_len=seq_len, deterministic=deterministic, seed=42)
        rng = np.random.RandomState(42)
        order = rng.permutation(n_digits)
        for i in range(n_digits // 2):
            picked = [images[order[2 * i]], images[order[2 * i + 1]]]
            rows = [ref_trajectory(rng, seq_len, 36, deterministic) for _ in picked]
            np.testing.assert_array_equal(data.latents[:, i], np.array(rows, dtype=np.int64).transpose(1, 0, 2))
            np.testing.assert_array_equal(data.sequences[:, i], ref_paste(picked, rows, seq_len))
            assert data.labels[i].tolist() == [labels[order[2 * i]], labels[order[2 * i + 1]]]


def test_training_clips_match_the_reference_of_the_official_code() -> None:
    # The dataset and the example's batch generator draw clips the same way from their stream.
    pool = load_embedded_digits("train").images[:300]
    for deterministic in (False, True):
        ds = MovingMNIST(pool, seq_len=25, deterministic=deterministic, seed=3)
        batch = generate_clips(
            pool, 40, 25, np.random.RandomState(3), num_digits=2, max_speed=4, deterministic=deterministic
        )
        rng = np.random.RandomState(3)
        for k in range(40):
            expected = ref_training_clip(pool, rng, 25, deterministic)
            np.testing.assert_array_equal(ds[k], expected)
            np.testing.assert_array_equal(batch[k], expected)


def slow_compose(
    digits: Sequence[np.ndarray], corners: Sequence[Sequence[Sequence[int]] | np.ndarray], T: int, size: int = 64
) -> np.ndarray:
    """The documented rule, frame by frame and digit by digit: the sum of the digit pixels, clipped at 255."""
    video = np.zeros((T, size, size), dtype=np.int64)
    for t in range(T):
        for digit, rows in zip(digits, corners):
            r, c = int(rows[t][0]), int(rows[t][1])
            s = digit.shape[0]
            video[t, r : r + s, c : c + s] += digit.astype(np.int64)
    return np.minimum(video, 255).astype(np.uint8)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("seq_len", [15, 25])
def test_generate_clips_batch_matches_a_per_frame_reference(seq_len: int, deterministic: bool) -> None:
    # The batch path (one compose for all clips) against clips drawn one by one in the official order and
    # pasted frame by frame; the stream must end where the reference's ends.
    pool = load_embedded_digits("train").images[:200].copy()
    pool[:20] = 255  # full squares: overlaps saturate
    shown = []
    for seed in range(4):
        rng, ref = np.random.RandomState(seed), np.random.RandomState(seed)
        batch = generate_clips(pool, 24, seq_len, rng, num_digits=2, max_speed=4, deterministic=deterministic)
        assert batch.shape == (24, seq_len, 64, 64) and batch.dtype == np.uint8 and batch.flags.c_contiguous
        for k in range(24):
            digits, corners = [], []
            for _ in range(2):
                digits.append(pool[ref.randint(len(pool))])
                corners.append([row[:2] for row in ref_trajectory(ref, seq_len, 36, deterministic)])
            np.testing.assert_array_equal(batch[k], slow_compose(digits, corners, seq_len))
            shown.extend(corners)
        assert rng.randint(2**31) == ref.randint(2**31)
    rows_cols = np.concatenate(shown)
    assert rows_cols.min(axis=0).tolist() == [0, 0] and rows_cols.max(axis=0).tolist() == [36, 36]  # all 4 borders


def test_compose_clips_borders_overlaps_and_other_dtypes() -> None:
    rng = np.random.RandomState(0)
    corners = [(0, 0), (0, 36), (36, 0), (36, 36), (20, 5), (0, 17)]
    digits = load_embedded_digits("test").images[:6].reshape(2, 3, 28, 28).copy()
    digits[1, 2] = 200  # a bright square over the others: the sum exceeds 255
    positions = rng.randint(0, 37, (2, 3, 12, 2))
    positions[:, :, : len(corners)] = corners  # every digit in every corner, then some overlaps
    positions[1, 2, 6:] = positions[1, 0, 6:]  # the square exactly on digit 0
    clips = compose_clips(digits, positions, 64)
    assert clips.shape == (2, 12, 64, 64) and clips.dtype == np.uint8 and clips.max() == 255
    for i in range(2):
        np.testing.assert_array_equal(clips[i], slow_compose(list(digits[i]), list(positions[i]), 12))
        np.testing.assert_array_equal(clips[i], compose_frames(list(digits[i]), list(positions[i]), 64))
    # Other sizes (a digit as large as the frame included), and a float pool, as compose_frames composes them.
    for size, image in ((5, 9), (8, 8), (1, 3)):
        for dtype in (np.uint8, np.float32):
            digits = (rng.rand(3, 4, size, size) * 120).astype(dtype)
            positions = rng.randint(0, image - size + 1, (3, 4, 7, 2))
            clips = compose_clips(digits, positions, image)
            for i in range(3):
                np.testing.assert_array_equal(clips[i], compose_frames(list(digits[i]), list(positions[i]), image))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.zeros((1, 1, 28, 28), np.uint8).tolist(), np.zeros((1, 1, 3, 2), np.int64), 64), TypeError, "digits"),
        ((np.zeros((1, 28, 28), np.uint8), np.zeros((1, 1, 3, 2), np.int64), 64), ValueError, "digits"),
        ((np.zeros((1, 1, 28, 28), np.uint8), np.zeros((1, 1, 3, 2), np.float64), 64), TypeError, "positions"),
        ((np.zeros((1, 1, 28, 28), np.uint8), np.zeros((1, 2, 3, 2), np.int64), 64), ValueError, "to match"),
        ((np.zeros((1, 1, 28, 28), np.uint8), np.full((1, 1, 3, 2), 37), 64), ValueError, r"in \[0, 36\]"),
        ((np.zeros((1, 1, 28, 28), np.uint8), np.full((1, 1, 3, 2), -1), 64), ValueError, r"in \[0, 36\]"),
        ((np.zeros((1, 1, 28, 28), np.uint8), np.zeros((1, 1, 3, 2), np.int64), 20), ValueError, "do not fit"),
        ((np.zeros((1, 1, 28, 28), np.uint8), np.zeros((1, 1, 3, 2), np.int64), 64.0), TypeError, "image_size"),
    ],
)
def test_compose_clips_errors(args: tuple[object, object, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        compose_clips(*args)  # type: ignore[arg-type]


def test_generate_clips_needs_a_clip_and_a_digit() -> None:
    pool = load_embedded_digits("train").images[:10]
    for n, num_digits in ((0, 2), (3, 0)):
        with pytest.raises(ValueError, match="at least 1 clip of at least 1 digit"):
            generate_clips(
                pool, n, 5, np.random.RandomState(0), num_digits=num_digits, max_speed=4, deterministic=False
            )


@needs_fixture
def test_the_reference_reproduces_the_official_fixture() -> None:
    # Checks the tests' reference itself against clips the official code produced (with 7 stochastic bounces).
    inputs = torch.load(FIXTURE, weights_only=True)
    glyphs, expected = inputs["glyphs"].numpy(), inputs["x_uint8"].numpy()
    rng = np.random.RandomState(0)
    clips = [ref_training_clip(glyphs, rng, 15, deterministic=False) for _ in range(2)]
    np.testing.assert_array_equal(np.stack(clips, axis=1), expected)


# ------------------------------------------------------------------------------------------------- dataset
def pool(n: int = 10) -> np.ndarray:
    return load_embedded_digits("test").images[:n]


def test_dataset_items() -> None:
    ds = MovingMNIST(torch.from_numpy(pool()), seq_len=7, num_digits=3, length=11, seed=5)
    clip = ds[0]
    assert len(ds) == 11 and clip.shape == (7, 64, 64) and clip.dtype == np.uint8
    assert clip.max() > 0
    again = MovingMNIST(pool(), seq_len=7, num_digits=3, seed=5)
    np.testing.assert_array_equal(again[123], clip)  # the index is ignored, the stream advances
    assert not np.array_equal(again[0], clip)


def test_dataset_deterministic_and_smaller_images() -> None:
    ds = MovingMNIST(pool()[:, :20, :20], seq_len=30, image_size=32, deterministic=True, seed=1)
    assert ds.limit == 12 and ds[0].shape == (30, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"digits": pool().astype(np.float32)}, TypeError, "digits: expected dtype uint8, got float32"),
        ({"digits": [[1]]}, TypeError, "digits: expected a uint8 array"),
        ({"digits": pool()[:, :, :27]}, ValueError, r"digits: expected shape \(N, s, s\)"),
        ({"digits": pool()[:0]}, ValueError, r"N >= 1"),
        ({"image_size": 20}, ValueError, "do not fit in image_size 20"),
        ({"seq_len": 0}, ValueError, "seq_len: expected an int >= 1, got 0"),
        ({"num_digits": 1.5}, TypeError, "num_digits: expected an int"),
        ({"max_speed": -1}, ValueError, "max_speed: expected an int >= 0"),
        ({"seed": -3}, ValueError, "seed: expected an int >= 0"),
        ({"seed": 2**32}, ValueError, r"seed: expected an int in \[0, 2\*\*32\)"),
    ],
)
def test_dataset_argument_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"digits": pool(), "seq_len": 5} | kwargs
    with pytest.raises(error, match=match):
        MovingMNIST(**args)  # type: ignore[arg-type]


def first_batches(ds: MovingMNIST, n: int) -> list[np.ndarray]:
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=lambda items: items[0])
    out = []
    for i, clip in enumerate(loader):
        out.append(clip)
        if i + 1 == n:
            break
    return out


@pytest.mark.parametrize("seed", [None, 7])
def test_dataloader_workers_draw_distinct_reproducible_streams(seed: int | None) -> None:
    ds = MovingMNIST(pool(), seq_len=4, length=8, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        first = first_batches(ds, 4)
        torch.manual_seed(0)
        again = first_batches(ds, 4)
        torch.manual_seed(1)
        other = first_batches(ds, 4)
    # Items 0 and 1 come from workers 0 and 1: different clips.
    assert not np.array_equal(first[0], first[1])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    if seed is not None:
        # The worker streams differ from the main-process stream of the same seed.
        assert not np.array_equal(first[0], MovingMNIST(pool(), seq_len=4, seed=seed)[0])


# ------------------------------------------------------------------------------------------------ test set
def test_make_test_set_follows_the_official_recipe() -> None:
    digits = load_embedded_digits("test")
    images, labels = digits.images[:40], digits.labels[:40]
    state = np.random.get_state()
    data = make_test_set(images, labels, seq_len=6, deterministic=False, seed=42)
    assert np.random.get_state()[1].tolist() == state[1].tolist(), "the global stream must be left alone"
    n = 20
    assert data.sequences.shape == (6, n, 64, 64) and data.sequences.dtype == np.uint8
    assert data.latents.shape == (6, n, 2, 4) and data.latents.dtype == np.int64
    assert data.labels.shape == (n, 2) and data.digits.shape == (n, 2, 28, 28) and data.digits.dtype == np.uint8
    # One permutation from np.random.seed(42); sequence i uses permuted digits 2i and 2i + 1.
    try:
        np.random.seed(42)
        order = np.random.permutation(40)
        first = [np.random.randint(0, 37), np.random.randint(0, 37), np.random.randint(-4, 5), np.random.randint(-4, 5)]
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(data.digits, images[order].reshape(n, 2, 28, 28))
    np.testing.assert_array_equal(data.labels, labels[order].reshape(n, 2))
    # The first digit's initial draws come right after the permutation; frame 0 shows them.
    assert data.latents[0, 0, 0].tolist() == first
    # The sequences are the digits pasted at the recorded corners (sx = row), summed and clipped.
    for i in range(n):
        expected = np.zeros((6, 64, 64), np.int64)
        for j in range(2):
            for t in range(6):
                sx, sy = data.latents[t, i, j, :2]
                expected[t, sx : sx + 28, sy : sy + 28] += data.digits[i, j]
        np.testing.assert_array_equal(data.sequences[:, i], np.minimum(expected, 255))
    assert data.latents[..., :2].min() >= 0 and data.latents[..., :2].max() <= 36


def test_make_test_set_seed_and_mode() -> None:
    images, labels = pool(12), load_embedded_digits("test").labels[:12]
    a = make_test_set(images, labels, seq_len=30, deterministic=True)
    b = make_test_set(torch.from_numpy(images), torch.from_numpy(labels), seq_len=30, deterministic=True)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    assert (np.abs(a.latents[..., 2:]) == np.abs(a.latents[:1, ..., 2:])).all()
    c = make_test_set(images, labels, seq_len=30, deterministic=True, seed=0)
    assert not np.array_equal(a.sequences, c.sequences)
    three = make_test_set(images, labels, seq_len=2, deterministic=False, num_digits=3)
    assert three.sequences.shape[1] == 4 and three.latents.shape == (2, 4, 3, 4)


def test_make_test_set_errors() -> None:
    images, labels = pool(5), np.arange(5)
    with pytest.raises(ValueError, match=r"labels: expected shape \(5,\) to match digits, got \[4\]"):
        make_test_set(images, labels[:4], seq_len=3, deterministic=False)
    with pytest.raises(TypeError, match="labels: expected an integer array"):
        make_test_set(images, labels.astype(np.float32), seq_len=3, deterministic=False)
    with pytest.raises(ValueError, match="need at least num_digits=6 digits, got 5"):
        make_test_set(images, labels, seq_len=3, deterministic=False, num_digits=6)
    with pytest.raises(ValueError, match="seq_len: expected an int >= 1"):
        make_test_set(images, labels, seq_len=0, deterministic=False)


def small_test_set() -> MovingMNISTTestData:
    return make_test_set(pool(6), np.arange(6) % 10, seq_len=5, deterministic=False)


def test_save_load_round_trip(tmp_path: Path) -> None:
    data = small_test_set()
    for compress in (True, False):
        path = save_test_set(tmp_path / f"sub/set_{compress}.npz", data, compress=compress)
        loaded = load_test_set(path)
        for key in ("sequences", "latents", "labels", "digits"):
            got, want = getattr(loaded, key), getattr(data, key)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["set_False.npz", "set_True.npz"]


def test_saved_test_set_gets_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    """The file is written through a temporary (mkstemp makes it 0600) but ends as open() would leave it."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        path = save_test_set(tmp_path / "a.npz", small_test_set())
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)  # replacing a file keeps its permissions
        save_test_set(path, small_test_set(), overwrite=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(previous)


def test_saved_test_set_without_os_fchmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has os.fchmod only from Python 3.13: the permissions are then set through the path."""
    import os
    import stat

    monkeypatch.delattr(os, "fchmod")
    previous = os.umask(0o022)
    try:
        path = save_test_set(tmp_path / "a.npz", small_test_set())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
    np.testing.assert_array_equal(load_test_set(path).sequences, small_test_set().sequences)


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = save_test_set(tmp_path / "a.npz", small_test_set())
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        save_test_set(path, small_test_set())
    other = make_test_set(pool(4), np.arange(4), seq_len=2, deterministic=True)
    save_test_set(path, other, overwrite=True)
    assert load_test_set(path).sequences.shape == (2, 2, 64, 64)
    with pytest.raises(TypeError, match="data: expected a MovingMNISTTestData, got dict"):
        save_test_set(tmp_path / "b.npz", {"sequences": other.sequences})  # type: ignore[arg-type]


def test_save_validates_data(tmp_path: Path) -> None:
    data = small_test_set()
    bad = MovingMNISTTestData(data.sequences, data.latents.astype(np.float32), data.labels, data.digits)
    with pytest.raises(ValueError, match="data: key 'latents': expected integer"):
        save_test_set(tmp_path / "x.npz", bad)
    with pytest.raises(TypeError, match="every field must be a numpy array"):
        save_test_set(tmp_path / "x.npz", MovingMNISTTestData(data.sequences, [1], data.labels, data.digits))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_save_leaves_no_partial_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(stream: object, **arrays: np.ndarray) -> None:
        stream.write(b"PK partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(OSError, match="disk full"):
        save_test_set(tmp_path / "x.npz", small_test_set())
    assert list(tmp_path.iterdir()) == []


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"latents": None}, "missing key.*latents"),
        ({"sequences": np.zeros((5, 3, 64, 64), np.float32)}, "key 'sequences': expected uint8"),
        ({"sequences": np.zeros((5, 3, 64, 32), np.uint8)}, "key 'sequences'.*H = W"),
        ({"labels": np.zeros((3, 2), np.float64)}, "key 'labels': expected integer"),
        ({"labels": np.zeros((4, 2), np.int64)}, r"key 'labels'.*N = 3"),
        ({"latents": np.zeros((5, 3, 2, 3), np.int64)}, r"key 'latents': expected integer \[5, 3, 2, 4\]"),
        ({"digits": np.zeros((3, 2, 28, 28), np.int64)}, "key 'digits': expected uint8"),
        ({"digits": np.zeros((3, 2, 80, 80), np.uint8)}, "key 'digits'.*no larger than the frames"),
    ],
)
def test_load_validates_keys_dtypes_shapes(tmp_path: Path, change: dict[str, object], match: str) -> None:
    data = small_test_set()
    arrays = {k: getattr(data, k) for k in ("sequences", "latents", "labels", "digits")}
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value  # type: ignore[assignment]
    path = write_npz(tmp_path / "t.npz", **arrays)
    with pytest.raises(ValueError, match=match) as info:
        load_test_set(path)
    assert str(path) in str(info.value)


def test_load_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such test-set file"):
        load_test_set(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz file"):
        load_test_set(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"expected an \.npz archive"):
        load_test_set(tmp_path / "single.npy")


@pytest.mark.parametrize("compress", [True, False])
def test_load_reports_damaged_files_in_one_line(tmp_path: Path, compress: bool) -> None:
    """Empty, truncated and bit-flipped files (an interrupted download or copy) give a ValueError naming the file.

    Before, they escaped as zipfile.BadZipFile ('Bad CRC-32', 'File is not a zip file') or EOFError tracebacks.
    """
    good = save_test_set(tmp_path / "good.npz", small_test_set(), compress=compress).read_bytes()
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"")
    with pytest.raises(ValueError, match=r"damaged\.npz: empty file \(0 bytes\)"):
        load_test_set(damaged)
    variants = [good[:n] for n in range(1, len(good), max(1, len(good) // 60))]
    for i in range(0, len(good), max(1, len(good) // 150)):
        flipped = bytearray(good)
        flipped[i] ^= 0x5A
        variants.append(bytes(flipped))
    failures = 0
    for data in variants:
        damaged.write_bytes(data)
        try:
            load_test_set(damaged)
        except ValueError as exc:
            failures += 1
            assert str(damaged) in str(exc) and "\n" not in str(exc), str(exc)
    assert failures > len(variants) // 2  # most damage is detected (flips in zip padding or names may not be)
    # A flipped byte in the stored data of an uncompressed member is caught by its CRC.
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0x01
    damaged.write_bytes(bytes(flipped))
    if not compress:
        with pytest.raises(ValueError, match=r"damaged\.npz: cannot read key 'sequences' \(Bad CRC-32"):
            load_test_set(damaged)


def test_load_names_the_file_for_an_object_array(tmp_path: Path) -> None:
    data = small_test_set()
    arrays = {k: getattr(data, k) for k in ("sequences", "latents", "labels", "digits")}
    arrays["labels"] = np.array([None, 1], dtype=object)
    np.savez(tmp_path / "obj.npz", **arrays)
    with pytest.raises(ValueError, match=r"obj\.npz: cannot read key 'labels' \(Object arrays cannot be loaded"):
        load_test_set(tmp_path / "obj.npz")


def lying_npz(path: Path, compress_type: int, **arrays: np.ndarray | tuple[int, ...]) -> Path:
    """An .npz whose members are real arrays, or (for a shape) an .npy header claiming it over 64 zero bytes."""
    with zipfile.ZipFile(path, "w", compression=compress_type) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            if isinstance(value, tuple):
                header = {"descr": "|u1", "fortran_order": False, "shape": value}
                np.lib.format.write_array_header_1_0(buffer, header)
                buffer.write(b"\0" * 64)
            else:
                np.lib.format.write_array(buffer, value, allow_pickle=True)
            archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


# A claim beyond any address space: without the check numpy's allocation fails whatever the overcommit policy.
HUGE = (1 << 20, 1 << 20, 64, 64)


@pytest.mark.parametrize("compress_type", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_load_refuses_headers_claiming_more_than_the_file(tmp_path: Path, compress_type: int) -> None:
    """A 1 KB file whose .npy header claims petabytes is damaged: one-line ValueError naming file and key.

    Before, numpy tried to allocate the claimed array first, and the bare MemoryError was re-raised."""
    data = small_test_set()
    arrays = {k: getattr(data, k) for k in ("sequences", "latents", "labels", "digits")}
    path = lying_npz(tmp_path / "huge.npz", compress_type, **{**arrays, "sequences": HUGE})
    claimed = (1 << 40) * 64 * 64
    with pytest.raises(ValueError) as info:
        load_test_set(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key 'sequences': truncated or corrupted: its .npy header claims ")
    assert f"[1048576, 1048576, 64, 64] uint8 ({claimed} bytes), its archive member holds at most" in message
    assert "\n" not in message
    # An array that load_test_set does not read is not checked.
    path = lying_npz(tmp_path / "extra.npz", compress_type, **arrays, unused=HUGE)
    np.testing.assert_array_equal(load_test_set(path).sequences, data.sequences)


# The demo's reader of test sets (examples/srvp/demo.py) reads the same files.


def test_demo_load_clips_refuses_lying_headers_naming_the_file(tmp_path: Path) -> None:
    from examples.srvp.demo import load_clips

    path = lying_npz(tmp_path / "huge.npz", zipfile.ZIP_STORED, sequences=HUGE)
    pattern = rf"^--test-set: {re.escape(str(path))}: key 'sequences': truncated or corrupted: its .npy header"
    with pytest.raises(ValueError, match=pattern):
        load_clips(path)
    clips = np.zeros((3, 2, 8, 8), np.uint8)
    assert load_clips(lying_npz(tmp_path / "ok.npz", zipfile.ZIP_DEFLATED, sequences=clips)).shape == (3, 2, 1, 8, 8)


def test_demo_load_clips_names_the_file_of_what_it_refuses(tmp_path: Path) -> None:
    """Before, an object array was refused as 'error: Object arrays cannot be loaded when allow_pickle=False'."""
    from examples.srvp.demo import load_clips

    obj = lying_npz(tmp_path / "obj.npz", zipfile.ZIP_STORED, sequences=np.array([None, 1], dtype=object))
    pattern = rf"^--test-set: {re.escape(str(obj))}: cannot read key 'sequences' \(Object arrays cannot be loaded"
    with pytest.raises(ValueError, match=pattern):
        load_clips(obj)
    single = tmp_path / "single.npz"
    with single.open("wb") as handle:
        np.save(handle, np.zeros((3, 2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=rf"^--test-set: {re.escape(str(single))}: expected an \.npz archive"):
        load_clips(single)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=rf"^--test-set: {re.escape(str(junk))}: not a readable \.npz file \("):
        load_clips(junk)
    wrong = lying_npz(tmp_path / "wrong.npz", zipfile.ZIP_STORED, sequences=np.zeros((3, 2, 8), np.float32))
    with pytest.raises(ValueError, match=rf"^--test-set: {re.escape(str(wrong))}: expected uint8 sequences"):
        load_clips(wrong)


def test_test_set_dataset(tmp_path: Path) -> None:
    data = small_test_set()
    ds = MovingMNISTTestSet(data)
    assert len(ds) == 3 and ds[1].shape == (5, 64, 64) and ds[1].flags.c_contiguous
    np.testing.assert_array_equal(ds[2], data.sequences[:, 2])
    np.testing.assert_array_equal(ds[-1], data.sequences[:, 2])
    path = save_test_set(tmp_path / "t.npz", data)
    short = MovingMNISTTestSet(str(path), seq_len=3)
    np.testing.assert_array_equal(short[0], data.sequences[:3, 0])
    batch = collate_videos([short[0], short[1]])
    assert batch.shape == (3, 2, 1, 64, 64)
    with pytest.raises(IndexError, match="index 3 out of range for 3 clips"):
        ds[3]
    with pytest.raises(ValueError, match="seq_len: expected at most the 5 stored frames, got 6"):
        MovingMNISTTestSet(data, seq_len=6)
    with pytest.raises(TypeError, match="source: expected MovingMNISTTestData or a path, got int"):
        MovingMNISTTestSet(3)  # type: ignore[arg-type]


def test_official_names() -> None:
    assert official_test_set_name(deterministic=False) == "smmnist_test_2digits_64.npz"
    assert official_test_set_name(deterministic=True, num_digits=3) == "mmnist_test_3digits_64.npz"


# ------------------------------------------------------------------------------------------------- collate
def test_collate_videos() -> None:
    rng = np.random.default_rng(0)
    gray = [rng.integers(0, 256, (4, 5, 6), dtype=np.uint8) for _ in range(3)]
    out = collate_videos(gray)
    assert out.shape == (4, 3, 1, 5, 6) and out.dtype == torch.float32 and out.is_contiguous()
    np.testing.assert_allclose(out[2, 1, 0].numpy(), gray[1][2] / 255.0, rtol=0, atol=1e-7)
    rgb = [torch.from_numpy(rng.integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)) for _ in range(2)]
    out = collate_videos(rgb)
    assert out.shape == (2, 2, 3, 5, 6)
    np.testing.assert_allclose(out[1, 0, 2].numpy(), rgb[0][1, :, :, 2].numpy() / 255.0, atol=1e-7)
    assert collate_videos([np.full((1, 2, 2), 255, np.uint8)]).max() == 1.0


def test_collate_videos_takes_read_only_arrays_without_a_warning() -> None:
    """Read-only videos (np.asarray of a Pillow image, a memory map's slice) were handed to torch.from_numpy, which
    warns that the tensor may not be written; they are copied instead, and the caller's array is untouched."""
    import warnings

    video = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    video.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = collate_videos([video, video[:, ::-1]])  # (a reversed view: not contiguous either)
    np.testing.assert_allclose(out[:, 1, 0].numpy(), video[:, ::-1] / 255.0, rtol=0, atol=1e-7)
    out.add_(1.0)
    assert video[0, 0, 1] == 1 and not video.flags.writeable


def test_stack_videos_then_to_unit_interval_is_collate_videos() -> None:
    """The two halves of collate_videos: uint8 (T, B, C, H, W) first (what DataLoader workers hand over), then
    v / 255 computed as the CPU divides, for each of the 256 values."""
    from latentdyn.video.collate import _UNIT_VALUES, stack_videos, to_unit_interval

    rng = np.random.default_rng(1)
    videos = [rng.integers(0, 256, (3, 5, 6, 2), dtype=np.uint8) for _ in range(4)]
    stacked = stack_videos(videos)
    assert stacked.shape == (3, 4, 2, 5, 6) and stacked.dtype == torch.uint8 and stacked.is_contiguous()
    assert torch.equal(stacked[1, 2, 1], torch.from_numpy(videos[2][1, :, :, 1]))
    by_numpy = np.stack(videos).transpose(1, 0, 4, 2, 3).astype(np.float32) / np.float32(255)
    assert torch.equal(to_unit_interval(stacked), torch.from_numpy(by_numpy))  # (collate_videos is the two steps)
    every = torch.arange(256, dtype=torch.uint8)
    exact = torch.tensor([np.float32(v) / np.float32(255) for v in range(256)], dtype=torch.float32)
    assert torch.equal(to_unit_interval(every), exact) and torch.equal(_UNIT_VALUES, exact)
    # Why the table on other devices: a product with the reciprocal, as CUDA computes x / 255, rounds otherwise.
    assert not torch.equal(every.float() * (1 / 255.0), exact)
    with pytest.raises(TypeError, match=r"x: expected a uint8 tensor, got a tensor of dtype torch\.float32"):
        to_unit_interval(exact)
    with pytest.raises(TypeError, match="x: expected a uint8 tensor, got ndarray"):
        to_unit_interval(videos[0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("videos", "error", "match"),
    [
        ([], ValueError, "at least one video"),
        (np.zeros((2, 3, 4, 4), np.uint8), TypeError, "expected a sequence"),
        ([np.zeros((3, 4, 4), np.float32)], TypeError, r"videos\[0\]: expected dtype uint8, got torch.float32"),
        ([[1, 2]], TypeError, r"videos\[0\]: expected a numpy array or torch.Tensor, got list"),
        ([np.zeros((4, 4), np.uint8)], ValueError, r"videos\[0\]: expected shape \(T, H, W\) or \(T, H, W, C\)"),
        (
            [np.zeros((3, 4, 4), np.uint8), np.zeros((3, 4, 5), np.uint8)],
            ValueError,
            r"videos\[1\]: every video must have the shape of videos\[0\] \[3, 4, 4\], got \[3, 4, 5\]",
        ),
    ],
)
def test_collate_videos_errors(videos: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        collate_videos(videos)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------- CLI
def write_mnist_test_split(root: Path, n: int) -> np.ndarray:
    images, labels = pool(n), np.arange(n, dtype=np.uint8) % 10
    raw = mnist_raw_dir(root)
    raw.mkdir(parents=True)
    for name, array in (("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels)):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
        (raw / name).write_bytes(gzip.compress(header + array.tobytes()))
    return images


def test_cli_smmnist_test_set_from_idx_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = write_mnist_test_split(tmp_path / "mnist", 20)
    out = tmp_path / "out.npz"
    argv = ["smmnist-test-set", "--mnist-dir", str(tmp_path / "mnist"), "--seq-len", "5", "--out", str(out)]
    assert data_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "10 sequences of 5 frames" in printed
    data = load_test_set(out)
    assert data.sequences.shape == (5, 10, 64, 64)
    expected = make_test_set(images, np.arange(20) % 10, seq_len=5, deterministic=False, seed=42)
    np.testing.assert_array_equal(data.sequences, expected.sequences)
    # Refuses to overwrite without --overwrite, with a one-line error and status 2.
    with pytest.raises(SystemExit) as info:
        data_cli.main(argv)
    assert info.value.code == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert data_cli.main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert not np.array_equal(load_test_set(out).sequences, expected.sequences)


def test_cli_embedded_digits_into_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "2", "--deterministic", "--out", str(tmp_path)]
    assert data_cli.main(argv) == 0
    path = tmp_path / "mmnist_test_2digits_64.npz"
    assert str(path) in capsys.readouterr().out
    assert load_test_set(path).sequences.shape == (2, 500, 64, 64)


@pytest.mark.parametrize("out", ["data/", "data"])
def test_cli_out_creates_a_missing_folder(
    out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The documented command line: `--out data/` in a folder where data/ does not exist yet.
    monkeypatch.chdir(tmp_path)
    argv = ["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "2", "--out", out]
    assert data_cli.main(argv) == 0
    assert (tmp_path / "data").is_dir()
    path = tmp_path / "data" / "smmnist_test_2digits_64.npz"
    assert str(path) in capsys.readouterr().out
    assert load_test_set(path).sequences.shape == (2, 500, 64, 64)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["smmnist_test_2digits_64.npz"]
    # The same folder again: the file is there, so it refuses without --overwrite.
    with pytest.raises(SystemExit) as info:
        data_cli.main(argv)
    assert info.value.code == 2 and "already exists; pass --overwrite" in capsys.readouterr().err


def test_cli_out_ending_in_npz_is_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "mine.npz"
    argv = ["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "2", "--deterministic", "--out", str(out)]
    assert data_cli.main(argv) == 0
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["mine.npz"]
    assert load_test_set(out).sequences.shape == (2, 500, 64, 64)
    # A trailing separator makes even a name ending in .npz a folder.
    folder = tmp_path / "odd.npz"
    assert data_cli.main([*argv[:-1], f"{folder}/"]) == 0
    assert (folder / "mmnist_test_2digits_64.npz").is_file()
    # An existing file without the .npz suffix cannot be the folder.
    (tmp_path / "plain").write_text("not a folder")
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        data_cli.main([*argv[:-1], str(tmp_path / "plain")])
    assert info.value.code == 2 and "exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "plain").read_text() == "not a folder"


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        data_cli.main(["smmnist-test-set", "--mnist-dir", str(tmp_path), "--out", str(tmp_path / "x.npz")])
    assert info.value.code == 2
    assert "t10k-images-idx3-ubyte[.gz]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        data_cli.main(["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "0"])
    assert info.value.code == 2 and "seq_len: expected an int >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        data_cli.main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        data_cli.main(["--help"])
    assert info.value.code == 0 and "smmnist-test-set" in capsys.readouterr().out


def test_cli_registry_rejects_duplicate_names() -> None:
    command = data_cli.COMMANDS["smmnist-test-set"]
    with pytest.raises(ValueError, match="command 'smmnist-test-set' is already registered"):
        data_cli.register(command)


# ------------------------------------------------------------------------------------------- argument checks
def test_test_set_items_are_read_by_integer_index_only() -> None:
    """NumPy read ``ds[True]`` as a mask (a (T, 1, N, H, W) array) and ``ds[1.0]`` failed inside NumPy."""
    digits = np.arange(4 * 28 * 28, dtype=np.int64).reshape(4, 28, 28).astype(np.uint8)
    ds = MovingMNISTTestSet(make_test_set(digits, np.arange(4), seq_len=3, deterministic=True))
    for bad in (True, np.bool_(False), 1.0, "1", None):
        with pytest.raises(TypeError, match=r"index: expected an int, got "):
            ds[bad]  # type: ignore[index]
    assert np.array_equal(ds[np.int64(1)], ds[1]) and ds[-1].shape == (3, 64, 64)


def test_deterministic_digits_need_room_to_move() -> None:
    """With digits as large as the frame (L = 0), the official deterministic bounce loop never ends (a reflected
    move lands a full step beyond the other wall, forever); it was accepted and failed on the first item."""
    digits = np.full((4, 28, 28), 200, np.uint8)
    room = r"deterministic Moving MNIST needs room to move"
    with pytest.raises(ValueError, match=rf"image_size: {room}, got image_size=28"):
        MovingMNIST(digits, seq_len=3, deterministic=True, image_size=28, seed=0)
    with pytest.raises(ValueError, match=rf"image_size: {room}"):
        make_test_set(digits, np.arange(4), seq_len=3, deterministic=True, image_size=28)
    with pytest.raises(ValueError, match=rf"limit: {room}, got limit=0 with velocity \(1, 0\)"):
        compute_trajectory(0, 0, 1, 0, seq_len=3, limit=0, deterministic=True)
    with pytest.raises(ValueError, match=rf"limit: {room}, got limit=0 with max_speed=4"):
        draw_trajectory(np.random.RandomState(0), seq_len=3, limit=0, deterministic=True)
    with pytest.raises(ValueError, match=rf"limit: {room}"):
        resolve_collisions(Motion(0.0, 1.0, 0, 1), limit=0, deterministic=True)
    # A digit that cannot move has a trajectory, and the stochastic version draws until it stays put.
    still = MovingMNIST(digits, seq_len=3, deterministic=True, image_size=28, max_speed=0, seed=0)[0]
    assert np.array_equal(still, np.full((3, 28, 28), 255, np.uint8))  # two digits of 200, clipped
    assert compute_trajectory(0, 0, 0, 0, seq_len=2, limit=0, deterministic=True).positions.tolist() == [[0, 0]] * 2
    stochastic = MovingMNIST(digits, seq_len=3, deterministic=False, image_size=28, seed=0)[0]
    assert np.array_equal(stochastic, still)


def test_trajectory_functions_check_their_arguments() -> None:
    rs = np.random.RandomState(0)
    legacy = r"rng: expected a numpy\.random\.RandomState .*got Generator"
    with pytest.raises(TypeError, match=legacy):
        draw_trajectory(np.random.default_rng(0), seq_len=3, limit=36, deterministic=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=legacy):
        compute_trajectory(0, 0, 1, 1, seq_len=3, limit=36, deterministic=False, rng=np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=legacy):
        resolve_collisions(Motion(-1.0, 0.0, -1, 0), limit=36, deterministic=False, rng=np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_speed: expected an int >= 0, got -1"):
        draw_trajectory(rs, seq_len=3, limit=36, deterministic=False, max_speed=-1)
    with pytest.raises(ValueError, match=r"limit: expected an int >= 0, got -1"):
        draw_trajectory(rs, seq_len=3, limit=-1, deterministic=False)
    with pytest.raises(TypeError, match=r"seq_len: expected an int >= 1, got float 3\.0"):
        draw_trajectory(rs, seq_len=3.0, limit=36, deterministic=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sx: expected an int, got str '0'"):
        compute_trajectory("0", 0, 1, 1, seq_len=3, limit=5, deterministic=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dx: expected an int, got float 1\.5"):
        compute_trajectory(0, 0, 1.5, 1, seq_len=3, limit=5, deterministic=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_speed: expected an int >= 0, got -2"):
        compute_trajectory(0, 0, 1, 1, seq_len=3, limit=5, deterministic=False, max_speed=-2)
    with pytest.raises(TypeError, match=r"limit: expected a real number >= 0, got str '36'"):
        resolve_collisions(Motion(-1.0, 0.0, -1, 0), limit="36", deterministic=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"limit: expected a real number >= 0, got -1"):
        resolve_collisions(Motion(-1.0, 0.0, -1, 0), limit=-1, deterministic=True)
    with pytest.raises(TypeError, match=r"motion: expected real x, y and integer dx, dy"):
        resolve_collisions(Motion(-1.0, 0.0, -1.0, 0), limit=36, deterministic=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"motion: expected a Motion\(x, y, dx, dy\), got list"):
        resolve_collisions([-1.0, 0.0, -1, 0], limit=36, deterministic=True)  # type: ignore[arg-type]
    # NumPy integers (array elements) are ints, and a RandomState gives the same draws as before the checks.
    i = np.int64
    traj = compute_trajectory(i(3), i(4), i(2), i(-1), seq_len=i(5), limit=i(36), deterministic=True)
    assert (
        traj.positions.tolist()
        == compute_trajectory(3, 4, 2, -1, seq_len=5, limit=36, deterministic=True).positions.tolist()
    )
