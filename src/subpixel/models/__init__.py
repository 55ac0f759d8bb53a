"""Model zoo: every architecture module is imported here so the registry knows it."""

from subpixel.models import (
    espcn,  # noqa: F401
    flagship,  # noqa: F401
    frvsr,  # noqa: F401
    interp,  # noqa: F401
    rlfn,  # noqa: F401
    sesr,  # noqa: F401
)
from subpixel.models.base import SRNet
from subpixel.models.registry import architectures, build, register

__all__ = ["SRNet", "architectures", "build", "register"]
