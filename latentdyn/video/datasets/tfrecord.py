"""TFRecord files and ``tf.train.Example`` messages, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked CRC32C of those 8 bytes | data | uint32 masked CRC32C of data

where ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)`` and CRC32C is the Castagnoli CRC
(reflected polynomial ``0x82F63B78``). A ``tf.train.Example`` is a protobuf message::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

This module implements the CRC (a byte table, vectorised with numpy for long records), the framing, and the
few protobuf wire-format rules those messages need.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from latentdyn._checks import check_bool
from latentdyn._files import atomic_path
from latentdyn.video.datasets.io import PathLike

__all__ = [
    "FeatureValue",
    "crc32c",
    "encode_example",
    "iter_tfrecord",
    "masked_crc32c",
    "parse_example",
    "write_tfrecord",
]

#: A decoded feature: a list of byte strings, float32 values or int64 values.
FeatureValue = list[bytes] | np.ndarray

_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)


def _raw_update_small(crc: int, data: bytes | memoryview) -> int:
    """Run the CRC register (no initial value, no final xor) over ``data``, one table lookup per byte."""
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


# The register update is linear over GF(2): raw(r, a) = M^len(a) r ^ raw(0, a), where M is the update
# for one zero byte. A linear map on 32-bit words is stored as the images of the 32 unit vectors.
_Matrix = tuple[int, ...]


def _apply(matrix: _Matrix, x: int) -> int:
    out = 0
    bit = 0
    while x:
        if x & 1:
            out ^= matrix[bit]
        x >>= 1
        bit += 1
    return out


def _compose(a: _Matrix, b: _Matrix) -> _Matrix:
    return tuple(_apply(a, column) for column in b)


@functools.cache
def _zero_bytes_power(log2_n: int) -> _Matrix:
    """The register map for 2**log2_n zero bytes."""
    if log2_n == 0:
        return tuple(_TABLE[(1 << j) & 0xFF] ^ ((1 << j) >> 8) for j in range(32))
    half = _zero_bytes_power(log2_n - 1)
    return _compose(half, half)


def _shift(x: int, n_bytes: int) -> int:
    """The register after ``n_bytes`` zero bytes, starting from ``x``."""
    level = 0
    while n_bytes:
        if n_bytes & 1:
            x = _apply(_zero_bytes_power(level), x)
        n_bytes >>= 1
        level += 1
    return x


@functools.cache
def _byte_tables(log2_n: int) -> np.ndarray:
    """(4, 256) uint32 tables applying the map of 2**log2_n zero bytes one input byte at a time."""
    matrix = _zero_bytes_power(log2_n)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for q in range(4):
        for b in range(1, 256):
            low = b & -b
            tables[q, b] = tables[q, b ^ low] ^ matrix[8 * q + low.bit_length() - 1]
    return tables


_CHUNK_LOG2 = 8  # chunks of 256 bytes
_VECTOR_THRESHOLD = 1 << 14


def _raw_crc_vectorised(data: np.ndarray) -> int:
    """raw(0, data) computed on 256-byte chunks in parallel, then merged pairwise in a tree."""
    chunk = 1 << _CHUNK_LOG2
    pad = (-len(data)) % chunk
    # Leading zero bytes leave raw(0, .) unchanged, so padding at the front is free.
    blocks = np.concatenate([np.zeros(pad, dtype=np.uint8), data]).reshape(-1, chunk).astype(np.uint32)
    crcs = np.zeros(len(blocks), dtype=np.uint32)
    for j in range(chunk):
        crcs = _TABLE_NP[(crcs ^ blocks[:, j]) & 0xFF] ^ (crcs >> 8)
    level = _CHUNK_LOG2
    while len(crcs) > 1:
        if len(crcs) % 2:
            crcs = np.concatenate([np.zeros(1, dtype=np.uint32), crcs])  # a leading all-zero chunk
        tables = _byte_tables(level)
        left, right = crcs[0::2], crcs[1::2]
        shifted = (
            tables[0][left & 0xFF]
            ^ tables[1][(left >> 8) & 0xFF]
            ^ tables[2][(left >> 16) & 0xFF]
            ^ tables[3][left >> 24]
        )
        crcs = shifted ^ right
        level += 1
    return int(crcs[0])


def _check_bytes(value: object, name: str, *, arrays: bool = False) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``value`` is bytes, a bytearray or a memoryview (or, with
    ``arrays``, a numpy array)."""
    kinds: tuple[type, ...] = (bytes, bytearray, memoryview, np.ndarray) if arrays else (bytes, bytearray, memoryview)
    if not isinstance(value, kinds):
        listed = "bytes, a bytearray, a memoryview or a numpy array" if arrays else "bytes, a bytearray or a memoryview"
        hint = "; encode a str first, e.g. value.encode('utf-8')" if isinstance(value, str) else ""
        raise TypeError(f"{name}: expected {listed}, got {type(value).__name__}{hint}")


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli) checksum of a byte string, as an int in [0, 2**32).

    Short inputs use a table lookup per byte; long ones are cut into chunks whose CRCs are computed in
    parallel with numpy and merged with the GF(2) shift operator, which gives the same value.

    Args:
        data: the bytes (a numpy array is read as its raw bytes).

    Returns:
        The checksum, an int in [0, 2**32).

    Raises:
        TypeError: ``data`` is not bytes, a bytearray, a memoryview or a numpy array (a ``str``: encode it).
    """
    _check_bytes(data, "data", arrays=True)
    if isinstance(data, np.ndarray):
        buffer = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    else:
        buffer = np.frombuffer(data, dtype=np.uint8)
    n = len(buffer)
    if n < _VECTOR_THRESHOLD:
        raw = _raw_update_small(_U32, buffer.tobytes())
    else:
        raw = _shift(_U32, n) ^ _raw_crc_vectorised(buffer)
    return raw ^ _U32


def masked_crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The masked CRC-32C TFRecord stores: rotate right by 15 bits, then add ``0xa282ead8``.

    Args:
        data: the bytes (a numpy array is read as its raw bytes).

    Returns:
        The masked checksum, an int in [0, 2**32).

    Raises:
        TypeError: ``data`` is not bytes, a bytearray, a memoryview or a numpy array.
    """
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def iter_tfrecord(path: PathLike, *, verify: bool = True) -> Iterator[bytes]:
    """Yield the records of a TFRecord file (uncompressed), checking the framing and the checksums.

    Args:
        path: the file.
        verify: check both CRCs of every record (set False to skip the data CRC, about half the cost).

    Raises:
        TypeError: ``verify`` is not a bool.
        FileNotFoundError: no file at ``path``.
        ValueError: a truncated record or a checksum mismatch; the message names the file and the record
            index (counted from 0).
    """
    verify = check_bool(verify, "verify", "False: skip the data CRC")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no TFRecord file at {p}")
    with p.open("rb") as handle:
        index = 0
        while True:
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(f"{p}: record {index}: truncated header ({len(header)} of 12 bytes)")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{p}: record {index}: length checksum mismatch (corrupt file?)")
            # Check the claimed length against what the file holds before reading: a damaged or forged
            # header could otherwise make the read allocate terabytes.
            left = os.fstat(handle.fileno()).st_size - handle.tell()
            if length + 4 > left:
                data_left, footer_left = min(length, left), max(0, min(4, left - length))
                raise ValueError(
                    f"{p}: record {index}: truncated data ({data_left} of {length} bytes and "
                    f"{footer_left} of 4 checksum bytes)"
                )
            data = handle.read(length)
            footer = handle.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError(
                    f"{p}: record {index}: truncated data ({len(data)} of {length} bytes and "
                    f"{len(footer)} of 4 checksum bytes)"
                )
            if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{p}: record {index}: data checksum mismatch (corrupt file?)")
            yield data
            index += 1


def write_tfrecord(path: PathLike, records: Iterable[bytes]) -> Path:
    """Write records into a TFRecord file (written under a temporary name, renamed when complete).

    Args:
        path: the output file.
        records: the serialised records, e.g. from :func:`encode_example`.

    Returns:
        The path written.
    """
    out = Path(path)
    with atomic_path(out) as tmp, tmp.open("wb") as handle:
        for record in records:
            length = struct.pack("<Q", len(record))
            handle.write(length)
            handle.write(struct.pack("<I", masked_crc32c(length)))
            handle.write(record)
            handle.write(struct.pack("<I", masked_crc32c(record)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Protobuf wire format (only what tf.train.Example needs).

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _read_varint(buffer: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buffer):
            raise ValueError("malformed protobuf: varint runs past the end of the message")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("malformed protobuf: varint longer than 10 bytes")


def _fields(buffer: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for every field of a serialised message."""
    pos = 0
    while pos < len(buffer):
        key, pos = _read_varint(buffer, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(buffer, pos)
        elif wire in (_FIXED64, _FIXED32, _LENGTH_DELIMITED):
            if wire == _LENGTH_DELIMITED:
                size, pos = _read_varint(buffer, pos)
            else:
                size = 8 if wire == _FIXED64 else 4
            if pos + size > len(buffer):
                raise ValueError(f"malformed protobuf: field {number} runs past the end of the message")
            value = buffer[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"malformed protobuf: unsupported wire type {wire} for field {number}")
        yield number, wire, value


def _as_bytes(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError(f"malformed tf.train.Example: {what} should be length-delimited")
    return value


def _parse_feature(buffer: bytes) -> FeatureValue:
    result: FeatureValue = []
    for number, _, value in _fields(buffer):
        if number == 1:  # BytesList
            result = [_as_bytes(v, "a bytes value") for n, _, v in _fields(_as_bytes(value, "bytes_list")) if n == 1]
        elif number == 2:  # FloatList: packed floats, or one fixed32 per value
            parts = [
                np.frombuffer(v, dtype="<f4")
                for n, _, v in _fields(_as_bytes(value, "float_list"))
                if n == 1 and isinstance(v, bytes)
            ]
            result = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        elif number == 3:  # Int64List: packed varints, or one varint per value
            ints: list[int] = []
            for n, w, v in _fields(_as_bytes(value, "int64_list")):
                if n != 1:
                    continue
                if w == _VARINT and isinstance(v, int):
                    ints.append(v)
                elif isinstance(v, bytes):
                    pos = 0
                    while pos < len(v):
                        item, pos = _read_varint(v, pos)
                        ints.append(item)
            result = np.array([i - (1 << 64) if i >= 1 << 63 else i for i in ints], dtype=np.int64)
    return result


def parse_example(record: bytes) -> dict[str, FeatureValue]:
    """Decode a serialised ``tf.train.Example`` into ``{name: value}``.

    Args:
        record: one serialised Example (a record of :func:`iter_tfrecord`).

    Returns:
        For each feature, a ``list[bytes]`` (bytes_list), a float32 array (float_list) or an int64 array
        (int64_list); a feature with no kind set decodes to an empty list.

    Raises:
        TypeError: ``record`` is not bytes, a bytearray or a memoryview.
        ValueError: the bytes are not a well-formed Example.
    """
    _check_bytes(record, "record")
    features: dict[str, FeatureValue] = {}
    for number, _, value in _fields(bytes(record)):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(_as_bytes(value, "features")):
            if entry_number != 1:
                continue
            key: str | None = None
            feature: FeatureValue = []
            for n, _, v in _fields(_as_bytes(entry, "a feature map entry")):
                if n == 1:
                    try:
                        key = _as_bytes(v, "a feature name").decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise ValueError(f"malformed tf.train.Example: feature name is not UTF-8 ({exc})") from exc
                elif n == 2:
                    feature = _parse_feature(_as_bytes(v, "a feature"))
            features[key if key is not None else ""] = feature
    return features


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint((number << 3) | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _encode_feature(name: str, value: object) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        value = [bytes(value)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bytes, bytearray)) for v in value):
        return _field(1, b"".join(_field(1, bytes(v)) for v in value))
    array = np.asarray(value)
    if array.dtype.kind == "f":
        return _field(2, _field(1, array.astype("<f4").reshape(-1).tobytes()))
    if array.dtype.kind in "iub":
        packed = b"".join(_encode_varint(int(v)) for v in array.reshape(-1))
        return _field(3, _field(1, packed))
    raise TypeError(
        f"features[{name!r}]: expected bytes, a sequence of bytes, or a numeric array, got {type(value).__name__}"
    )


def encode_example(features: Mapping[str, object]) -> bytes:
    """Serialise ``{name: value}`` as a ``tf.train.Example`` (keys in sorted order).

    Values: ``bytes`` or a sequence of ``bytes`` → bytes_list; a float array or list → float_list
    (float32); an integer or bool array or list → int64_list.

    Args:
        features: the feature values by name.

    Returns:
        The serialised Example (a record for :func:`write_tfrecord`).

    Raises:
        TypeError: ``features`` is not a mapping, a name is not a ``str``, or a value of another kind.
    """
    if not isinstance(features, Mapping):
        raise TypeError(f"features: expected a mapping {{name: value}}, got {type(features).__name__}")
    for name in features:
        if not isinstance(name, str):
            raise TypeError(f"features: expected str feature names, got {type(name).__name__} {name!r}")
    entries = b"".join(
        _field(1, _field(1, name.encode("utf-8")) + _field(2, _encode_feature(name, features[name])))
        for name in sorted(features)
    )
    return _field(1, entries)
