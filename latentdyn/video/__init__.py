"""Reusable video pieces: data sets (Moving MNIST, KTH, Human3.6M, BAIR, folders), metrics and media.

Submodules are imported on demand (``from latentdyn.video.metrics import psnr``) so that optional
dependencies (PyAV for real videos, imageio for GIFs) are only needed by the parts that use them.
"""
