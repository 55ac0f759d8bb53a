"""Benchmark jobs: an LR frame size and a scale (the standard three all give about 4K out)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from subpixel.errors import SubpixelError

__all__ = ["Job", "STANDARD_JOBS", "QUICK_JOB", "parse_jobs"]


@dataclass(frozen=True)
class Job:
    """Upscale ``width`` x ``height`` LR frames by ``scale``."""

    width: int
    height: int
    scale: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}x{self.scale}"

    @property
    def out_megapixels(self) -> float:
        return self.width * self.height * self.scale**2 / 1e6

    @classmethod
    def parse(cls, spec: str) -> Job:
        """``"960x540x4"`` -> ``Job(960, 540, 4)``."""
        m = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)\s*", spec)
        if not m or 0 in (w := int(m[1]), h := int(m[2]), s := int(m[3])):
            raise SubpixelError(f"a job is WIDTHxHEIGHTxSCALE with positive numbers, e.g. 960x540x4; got {spec!r}")
        return cls(w, h, s)


STANDARD_JOBS = (Job(960, 540, 4), Job(1280, 720, 3), Job(1920, 1080, 2))
QUICK_JOB = Job(160, 90, 4)


def parse_jobs(specs: str) -> tuple[Job, ...]:
    """A comma-separated list of job specs (``standard`` stands for the three standard jobs)."""
    jobs: list[Job] = []
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        jobs.extend(STANDARD_JOBS if spec == "standard" else (Job.parse(spec),))
    if not jobs:
        raise SubpixelError("no benchmark jobs given")
    return tuple(jobs)
