"""Video super-resolution: a streaming, resumable decode -> SR -> encode pipeline."""

from subpixel.video.pipeline import FrameProcessor, UpscalerProcessor, VideoOptions, as_processor, upscale_video

__all__ = ["FrameProcessor", "UpscalerProcessor", "VideoOptions", "as_processor", "upscale_video"]
