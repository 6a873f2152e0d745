"""TFRecord/Example codec and the BAIR pipeline: TFRecords written by the test → PNG folders → clips."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from latentdyn.video.datasets import (
    BAIRDataset,
    convert_bair,
    crc32c,
    encode_example,
    iter_tfrecord,
    parse_example,
    write_tfrecord,
)
from latentdyn.video.datasets.tfrecord import masked_crc32c

# --------------------------------------------------------------------------------------------------------
# CRC-32C


def bitwise_crc32c(data: bytes) -> int:
    """Reference CRC-32C, one bit at a time (no table): reflected polynomial 0x82F63B78."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors() -> None:
    # The check value of CRC-32C, and the iSCSI test vectors of RFC 3720, appendix B.4.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"") == 0


@settings(derandomize=True, deadline=None, max_examples=12)
@given(st.integers(0, 40_000), st.integers(0, 2**32 - 1))
def test_crc32c_long_inputs_match_the_bitwise_reference(n: int, seed: int) -> None:
    """Long inputs take the chunked numpy path; it must agree with the plain definition."""
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc32c(data) == bitwise_crc32c(data)


@pytest.mark.parametrize("n", [16_383, 16_384, 16_385, 65_536 + 7])
def test_crc32c_at_the_vectorisation_threshold(n: int) -> None:
    data = (bytes(range(256)) * (n // 256 + 1))[:n]
    assert crc32c(data) == bitwise_crc32c(data)
    assert crc32c(np.frombuffer(data, dtype=np.uint8)) == crc32c(data)


def test_masked_crc_is_rotated_and_offset() -> None:
    crc = bitwise_crc32c(b"abc")
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    assert masked_crc32c(b"abc") == (rotated + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------------------
# TFRecord framing


def test_tfrecord_framing_bytes(tmp_path: Path) -> None:
    path = write_tfrecord(tmp_path / "one.tfrecords", [b"hello"])
    raw = path.read_bytes()
    assert raw[:8] == struct.pack("<Q", 5)
    assert raw[8:12] == struct.pack("<I", masked_crc32c(struct.pack("<Q", 5)))
    assert raw[12:17] == b"hello"
    assert raw[17:] == struct.pack("<I", masked_crc32c(b"hello"))


def test_tfrecord_roundtrip(tmp_path: Path) -> None:
    records = [b"", b"a", bytes(range(256)) * 100, b"last"]
    path = write_tfrecord(tmp_path / "r.tfrecords", records)
    assert list(iter_tfrecord(path)) == records
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def damaged(tmp_path: Path, offset: int | None = None, cut: int | None = None) -> Path:
    path = write_tfrecord(tmp_path / "d.tfrecords", [b"first record", b"second record"])
    data = bytearray(path.read_bytes())
    if offset is not None:
        data[offset] ^= 0x01
    if cut is not None:
        data = data[:cut]
    path.write_bytes(bytes(data))
    return path


def test_tfrecord_errors_name_file_and_record(tmp_path: Path) -> None:
    first = 8 + 4 + len(b"first record") + 4
    with pytest.raises(ValueError, match=r"d.tfrecords: record 1: data checksum mismatch"):
        list(iter_tfrecord(damaged(tmp_path, offset=first + 12 + 3)))
    assert list(iter_tfrecord(damaged(tmp_path, offset=first + 12 + 3), verify=False))[1] != b"second record"
    with pytest.raises(ValueError, match=r"d.tfrecords: record 0: length checksum mismatch"):
        list(iter_tfrecord(damaged(tmp_path, offset=9)))
    with pytest.raises(ValueError, match=r"d.tfrecords: record 1: truncated data"):
        list(iter_tfrecord(damaged(tmp_path, cut=first + 12 + 4)))
    with pytest.raises(ValueError, match=r"d.tfrecords: record 1: truncated header \(5 of 12 bytes\)"):
        list(iter_tfrecord(damaged(tmp_path, cut=first + 5)))
    with pytest.raises(FileNotFoundError, match=r"no TFRecord file at .*missing.tfrecords"):
        list(iter_tfrecord(tmp_path / "missing.tfrecords"))

    with pytest.raises(ValueError, match=r"record 1: truncated data \(13 of 13 bytes and 2 of 4 checksum bytes\)"):
        list(iter_tfrecord(damaged(tmp_path, cut=first + 12 + 13 + 2)))


@pytest.mark.parametrize("claimed", [1 << 40, (1 << 64) - 1])
def test_tfrecord_huge_claimed_length_is_truncated_not_allocated(tmp_path: Path, claimed: int) -> None:
    """A header (with a valid checksum) claiming far more than the file holds is refused before reading:
    the old code asked for that many bytes and died with a bare MemoryError (or OverflowError)."""
    path = write_tfrecord(tmp_path / "h.tfrecords", [b"first record"])
    length = struct.pack("<Q", claimed)
    with path.open("ab") as handle:
        handle.write(length + struct.pack("<I", masked_crc32c(length)) + b"\0" * 16)
    records = iter_tfrecord(path)
    assert next(records) == b"first record"
    with pytest.raises(ValueError, match=rf"h.tfrecords: record 1: truncated data \(16 of {claimed} bytes and 0 of 4"):
        next(records)


# --------------------------------------------------------------------------------------------------------
# tf.train.Example


def test_example_wire_format_by_hand() -> None:
    """{"a": int64_list [1]} serialises to the bytes the protobuf wire format prescribes."""
    int64_list = b"\x0a\x01\x01"  # field 1, packed, 1 byte: varint 1
    feature = b"\x1a\x03" + int64_list  # Feature.int64_list = field 3
    entry = b"\x0a\x01a" + b"\x12\x05" + feature  # map entry: key = field 1, value = field 2
    features = b"\x0a\x0a" + entry  # Features.feature = field 1
    example = b"\x0a\x0c" + features  # Example.features = field 1
    assert encode_example({"a": np.array([1])}) == example
    parsed = parse_example(example)
    assert list(parsed) == ["a"]
    np.testing.assert_array_equal(parsed["a"], [1])


def test_example_decodes_unpacked_lists_and_skips_unknown_fields() -> None:
    float_list = b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", -2.0)  # fixed32, unpacked
    int64_list = b"\x08\x07" + b"\x08" + b"\xff" * 9 + b"\x01"  # varints, unpacked: 7 and -1
    unknown = b"\x20\x05"  # field 4, varint: not part of Feature, must be ignored
    f_entry = b"\x0a\x01f" + b"\x12" + bytes([2 + len(float_list)]) + b"\x12" + bytes([len(float_list)]) + float_list
    i_body = b"\x1a" + bytes([len(int64_list)]) + int64_list + unknown
    i_entry = b"\x0a\x01i" + b"\x12" + bytes([len(i_body)]) + i_body
    features = b"\x0a" + bytes([len(f_entry)]) + f_entry + b"\x0a" + bytes([len(i_entry)]) + i_entry
    example = b"\x0a" + bytes([len(features)]) + features + b"\x15\x00\x00\x00\x00"  # + unknown fixed32
    parsed = parse_example(example)
    assert isinstance(parsed["f"], np.ndarray) and parsed["f"].dtype == np.float32
    np.testing.assert_array_equal(parsed["f"], [1.5, -2.0])
    assert isinstance(parsed["i"], np.ndarray) and parsed["i"].dtype == np.int64
    np.testing.assert_array_equal(parsed["i"], [7, -1])


def test_example_roundtrip() -> None:
    features = {
        "frame": b"\x00\x01\x02",
        "many": [b"x", b"", b"yz"],
        "none": [],
        "floats": np.array([0.25, -1e3, 3.5], dtype=np.float32),
        "ints": np.array([0, -5, 2**40, -(2**62)]),
        "flags": np.array([True, False]),
    }
    parsed = parse_example(encode_example(features))
    assert parsed["frame"] == [b"\x00\x01\x02"]
    assert parsed["many"] == [b"x", b"", b"yz"]
    assert parsed["none"] == []
    np.testing.assert_array_equal(parsed["floats"], features["floats"])
    np.testing.assert_array_equal(parsed["ints"], features["ints"])
    np.testing.assert_array_equal(parsed["flags"], [1, 0])
    with pytest.raises(TypeError, match=r"features\['bad'\]: expected bytes, a sequence of bytes"):
        encode_example({"bad": "a string"})


def test_malformed_example() -> None:
    with pytest.raises(ValueError, match=r"malformed protobuf: field 1 runs past the end"):
        parse_example(b"\x0a\x20abc")
    with pytest.raises(ValueError, match=r"malformed protobuf: varint runs past the end"):
        parse_example(b"\x08\xff")
    with pytest.raises(ValueError, match=r"malformed protobuf: unsupported wire type 3"):
        parse_example(b"\x0b")
    with pytest.raises(ValueError, match=r"malformed tf.train.Example: features should be length-delimited"):
        parse_example(b"\x08\x01")


# --------------------------------------------------------------------------------------------------------
# BAIR


def bair_record(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """A record with BAIR's feature names: 30 frames of image_aux1 (and image_main), actions, positions."""
    video = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    features: dict[str, object] = {}
    for i in range(30):
        features[f"{i}/image_aux1/encoded"] = video[i].tobytes()
        features[f"{i}/image_main/encoded"] = rng.integers(0, 256, 64 * 64 * 3, dtype=np.uint8).tobytes()
        features[f"{i}/action"] = rng.normal(size=4).astype(np.float32)
        features[f"{i}/endeffector_pos"] = rng.normal(size=3).astype(np.float32)
    return encode_example(features), video


@pytest.fixture(scope="module")
def bair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[np.ndarray]]]:
    """(raw_dir, data_dir, videos by record file stem)."""
    base = tmp_path_factory.mktemp("bair")
    rng = np.random.default_rng(0)
    videos: dict[str, list[np.ndarray]] = {}
    for split, files in [("train", {"traj_0_to_2": 3, "traj_256_to_257": 2}), ("test", {"traj_0_to_1": 2})]:
        folder = base / "raw" / "softmotion30_44k" / split
        folder.mkdir(parents=True)
        for stem, n in files.items():
            records = [bair_record(rng) for _ in range(n)]
            write_tfrecord(folder / f"{stem}.tfrecords", [r for r, _ in records])
            videos[f"{split}/{stem}"] = [v for _, v in records]
    report = convert_bair(base / "raw", base / "data")
    assert (report.written, report.skipped) == (3, 0)
    return base / "raw", base / "data", videos


def test_conversion_layout_and_pixels(bair: tuple[Path, Path, dict[str, list[np.ndarray]]]) -> None:
    _, data, videos = bair
    train = data / "processed_data" / "train"
    assert sorted(p.name for p in train.iterdir()) == ["traj_0_to_2", "traj_256_to_257"]
    assert sorted(p.name for p in (train / "traj_0_to_2").iterdir()) == ["001", "002", "003"]  # k from 1
    frames = sorted(p.name for p in (train / "traj_0_to_2" / "002").iterdir())
    assert frames == [f"{i:03d}.png" for i in range(30)]  # i from 0
    for i in (0, 17, 29):
        image = np.asarray(Image.open(train / "traj_0_to_2" / "002" / f"{i:03d}.png"))
        np.testing.assert_array_equal(image, videos["train/traj_0_to_2"][1][i])  # lossless, record 2
    report = convert_bair(bair[0], data)
    assert (report.written, report.skipped) == (0, 3)


def test_dataset_splits_and_clips(bair: tuple[Path, Path, dict[str, list[np.ndarray]]]) -> None:
    _, data, videos = bair
    ordered = videos["train/traj_0_to_2"] + videos["train/traj_256_to_257"]  # sorted folders
    perm = np.random.RandomState(42).permutation(5)
    train = BAIRDataset(data, seq_len=12, split="train", rng=np.random.default_rng(0))
    val = BAIRDataset(data, seq_len=12, split="val")
    assert len(train) == 4 and len(val) == 1  # int(0.95 * 5) = 4
    train_sources = [ordered[i] for i in sorted(perm[:4])]
    starts = set()
    for index in range(4):
        for _ in range(5):
            clip = train[index]
            assert clip.dtype == np.uint8 and clip.shape == (12, 64, 64, 3)
            matches = [s for s in range(19) if np.array_equal(clip, train_sources[index][s : s + 12])]
            assert len(matches) == 1
            starts.add(matches[0])
    assert len(starts) > 3
    first = val[0]  # drawn once: a draw per comparison would compare against other random starts
    assert any(np.array_equal(first, ordered[perm[4]][s : s + 12]) for s in range(19))
    test = BAIRDataset(data, seq_len=30, split="test")
    assert len(test) == 2
    np.testing.assert_array_equal(test[1], videos["test/traj_0_to_1"][1])  # every frame, from 0
    np.testing.assert_array_equal(BAIRDataset(data, seq_len=5, split="test")[0], videos["test/traj_0_to_1"][0][:5])


def test_frame_of_wrong_size_is_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BAIR frames are 64x64: a larger one (a decompression bomb below Pillow's limit) is refused before decoding.

    Before, the whole image was decoded (2 GB for a 13000x13000 PNG of 493 KB) and only then measured."""
    from PIL import ImageFile

    video = tmp_path / "processed_data" / "test" / "traj_0_to_0" / "000"
    video.mkdir(parents=True)
    for i in range(30):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(video / f"{i:03d}.png")
    Image.fromarray(np.zeros((640, 480, 3), np.uint8)).save(video / "000.png")
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def recording_load(image: ImageFile.ImageFile) -> object:
        decoded.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    with pytest.raises(ValueError, match=r"000/000.png: expected a 64x64 \(H x W\) frame, got 640x480$"):
        BAIRDataset(tmp_path, seq_len=2, split="test")[0]
    assert decoded == []
    (video / "000.png").write_bytes((video / "001.png").read_bytes())
    assert BAIRDataset(tmp_path, seq_len=2, split="test")[0].shape == (2, 64, 64, 3)
    assert decoded and set(decoded) == {(64, 64)}


def test_dataset_errors(bair: tuple[Path, Path, dict[str, list[np.ndarray]]], tmp_path: Path) -> None:
    _, data, _ = bair
    with pytest.raises(ValueError, match=r"seq_len: BAIR videos have 30 frames, got seq_len=31"):
        BAIRDataset(data, seq_len=31)
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val', 'test'"):
        BAIRDataset(data, seq_len=5, split="validation")
    with pytest.raises(ValueError, match=r"processed_data/train, found none; run convert_bair"):
        BAIRDataset(tmp_path, seq_len=5)
    short = tmp_path / "processed_data" / "test" / "traj_0_to_0" / "001"
    short.mkdir(parents=True)
    for i in range(29):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(short / f"{i:03d}.png")
    with pytest.raises(ValueError, match=r"001: expected 30 frames 000.png-029.png, found 29"):
        BAIRDataset(tmp_path, seq_len=5, split="test")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(short / "029.png")
    with pytest.raises(ValueError, match=r"029.png: expected a 64x64 \(H x W\) frame, got 32x32$"):
        BAIRDataset(tmp_path, seq_len=30, split="test")[0]
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(short / "029.png")
    with pytest.raises(ValueError, match=r"029.png: expected a 64x64 RGB frame, got shape \(64, 64\)"):
        BAIRDataset(tmp_path, seq_len=30, split="test")[0]
    (tmp_path / "processed_data" / "train").mkdir()
    with pytest.raises(ValueError, match=r"root: no BAIR video folder under"):
        BAIRDataset(tmp_path, seq_len=5)


def raw_layout(tmp_path: Path, records: list[bytes]) -> Path:
    raw = tmp_path / "raw" / "softmotion30_44k"
    (raw / "train").mkdir(parents=True)
    (raw / "test").mkdir(parents=True)
    write_tfrecord(raw / "train" / "traj_0_to_1.tfrecords", records)
    write_tfrecord(raw / "test" / "traj_0_to_0.tfrecords", records[:1])
    return tmp_path / "raw"


def assert_no_output_for(tmp_path: Path) -> None:
    train = tmp_path / "out" / "processed_data" / "train"
    assert not train.exists() or list(train.iterdir()) == []


def test_record_with_a_missing_frame(tmp_path: Path) -> None:
    good, _ = bair_record(np.random.default_rng(1))
    features = parse_example(good)
    del features["5/image_aux1/encoded"]
    raw = raw_layout(tmp_path, [good, encode_example(features)])
    with pytest.raises(
        ValueError, match=r"traj_0_to_1.tfrecords: record 1: missing bytes feature '5/image_aux1/encoded'"
    ):
        convert_bair(raw, tmp_path / "out")
    assert_no_output_for(tmp_path)


def test_record_with_a_frame_of_the_wrong_size(tmp_path: Path) -> None:
    good, _ = bair_record(np.random.default_rng(2))
    features = parse_example(good)
    features["0/image_aux1/encoded"] = [b"\x00" * 100]
    raw = raw_layout(tmp_path, [encode_example(features), good])
    with pytest.raises(ValueError, match=r"record 0: feature '0/image_aux1/encoded' holds 100 bytes, expected 12288"):
        convert_bair(raw, tmp_path / "out")
    assert_no_output_for(tmp_path)


def test_conversion_stops_at_a_checksum_mismatch(tmp_path: Path) -> None:
    good, _ = bair_record(np.random.default_rng(3))
    raw = raw_layout(tmp_path, [good, good])
    path = raw / "softmotion30_44k" / "train" / "traj_0_to_1.tfrecords"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside record 1's frames
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"traj_0_to_1.tfrecords: record 1: data checksum mismatch"):
        convert_bair(raw, tmp_path / "out")
    assert_no_output_for(tmp_path)
    assert not list((tmp_path / "out" / "processed_data").rglob(".*"))  # no temporary folder left


def test_file_without_any_record_is_an_error(tmp_path: Path) -> None:
    """A zero-byte file (a failed download) used to become an empty folder, reported as converted and then
    skipped by every later run, so its 256 videos went missing without a word."""
    good, _ = bair_record(np.random.default_rng(4))
    raw = raw_layout(tmp_path, [good])
    empty = raw / "softmotion30_44k" / "train" / "traj_2_to_2.tfrecords"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"traj_2_to_2\.tfrecords: no record \(0 bytes\): an interrupted download"):
        convert_bair(raw, tmp_path / "out")
    train = tmp_path / "out" / "processed_data" / "train"
    assert [d.name for d in train.iterdir()] == ["traj_0_to_1"]  # nothing (not even a hidden folder) for it
    write_tfrecord(empty, [good])  # downloaded again: the next run converts it
    report = convert_bair(raw, tmp_path / "out")
    assert (report.written, report.skipped) == (2, 1)
    assert [d.name for d in (train / "traj_2_to_2").iterdir()] == ["001"]


def test_wrong_raw_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"softmotion30_44k, found none; expected raw_dir/softmotion30_44k"):
        convert_bair(tmp_path, tmp_path / "out")
    (tmp_path / "softmotion30_44k" / "test").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"softmotion30_44k/train, found none"):
        convert_bair(tmp_path, tmp_path / "out")
    (tmp_path / "softmotion30_44k" / "train").mkdir()
    with pytest.raises(ValueError, match=r"no .tfrecords file in .*train"):
        convert_bair(tmp_path, tmp_path / "out")
