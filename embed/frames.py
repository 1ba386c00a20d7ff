"""Frame facts of embedders (defined in homesound.frames, which the workspace and hub read without embed/)."""

from homesound.frames import FLOAT16, UINT8_AUDIOSET, VGGISH_FRAMES, YAMNET_FRAMES, FrameSpec

__all__ = ["FLOAT16", "UINT8_AUDIOSET", "VGGISH_FRAMES", "YAMNET_FRAMES", "FrameSpec"]
