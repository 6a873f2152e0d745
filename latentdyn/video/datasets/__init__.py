"""Real video datasets: KTH, Human3.6M, BAIR and folders of your own videos.

Every dataset returns uint8 numpy clips, (T, H, W) for grayscale or (T, H, W, 3) for colour, so
:func:`latentdyn.video.collate.collate_videos` batches them into float (T, B, C, H, W) in [0, 1].

Each paper dataset comes as three steps, each writing its outputs atomically (temporary name, then
rename), so an interrupted step leaves nothing half-written:

=================  =========================  ===============================  ===================================
dataset            convert the raw download   build the fixed test set          load
=================  =========================  ===============================  ===================================
KTH                :func:`convert_kth`        :func:`make_kth_test_set`        :class:`KTHDataset`,
                                                                               :class:`KTHTestDataset`
Human3.6M          :func:`convert_human36m`   :func:`make_human36m_test_set`   :class:`Human36MDataset`,
                                                                               :class:`Human36MTestDataset`
BAIR               :func:`convert_bair`       (every test video is used)       :class:`BAIRDataset`
=================  =========================  ===============================  ===================================

Video files are decoded with PyAV (``pip install "latentdyn[video]"``), imported only when a video is
read or written; BAIR's TFRecords are read without TensorFlow (:mod:`.tfrecord`).
"""

from __future__ import annotations

from latentdyn.video.datasets._common import ClipRef, ConversionReport
from latentdyn.video.datasets.bair import BAIRDataset, convert_bair, decode_bair_record
from latentdyn.video.datasets.folder import VideoFolderDataset
from latentdyn.video.datasets.human36m import (
    Human36MDataset,
    Human36MTestDataset,
    convert_human36m,
    make_human36m_test_set,
)
from latentdyn.video.datasets.io import VideoInfo, iter_video, probe_video, read_video, write_video
from latentdyn.video.datasets.kth import (
    KTH_CLASSES,
    KTHDataset,
    KTHTestDataset,
    convert_kth,
    make_kth_test_set,
)
from latentdyn.video.datasets.tfrecord import (
    crc32c,
    encode_example,
    iter_tfrecord,
    parse_example,
    write_tfrecord,
)

__all__ = [
    "KTH_CLASSES",
    "BAIRDataset",
    "ClipRef",
    "ConversionReport",
    "Human36MDataset",
    "Human36MTestDataset",
    "KTHDataset",
    "KTHTestDataset",
    "VideoFolderDataset",
    "VideoInfo",
    "convert_bair",
    "convert_human36m",
    "convert_kth",
    "crc32c",
    "decode_bair_record",
    "encode_example",
    "iter_tfrecord",
    "iter_video",
    "make_human36m_test_set",
    "make_kth_test_set",
    "parse_example",
    "probe_video",
    "read_video",
    "write_tfrecord",
    "write_video",
]
