"""Latent walks: a looping path through some seeds' latents, as frames and as a video file.

The walk through seeds s0, s1, ..., sn goes s0 -> s1 -> ... -> sn -> s0 along spherical
interpolations (`sampling.interpolate`, the frames of the server's interpolation strip); each
segment leaves out its last frame, the next segment's first, so the loop has no repeated frame.
A conditional generator walks within one class, or, given none, from each seed's own class to the
next one's, mixing the two class embeddings.

Files: MP4 (H.264 through PyAV, whose wheels ship FFmpeg and libx264, so no system ffmpeg is
needed: `pip install "dcgan[video]"`), GIF and WebP (animated, lossless) through Pillow. Frames are
scaled up by whole pixels (nearest neighbour), so a 32-pixel generator makes a 256-pixel video.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcgan.errors import UserError
from dcgan.files import atomic_write
from dcgan.sampling import class_labels, interpolate, is_conditional

FORMATS = (".mp4", ".gif", ".webp")
MIN_FRAMES, MAX_FRAMES = 2, 3600
MAX_WAYPOINTS = 100
MAX_FPS = 120
MAX_GIF_FPS = 50  # GIF delays are whole hundredths of a second, and browsers slow delays under 0.02 s
VIDEO_SIZE = 256  # frames are scaled up by whole pixels to at least this
EXTRA = 'pip install "dcgan[video]"'


def segment_lengths(frames: int, segments: int) -> list[int]:
    """`frames` split over `segments` as evenly as whole frames allow, the longer segments first."""
    return [frames // segments + (1 if i < frames % segments else 0) for i in range(segments)]


def walk_frames(generator: torch.nn.Module, seeds: list[int], frames: int, *, label: int | None = None,
                truncation: float | None = None) -> torch.Tensor:
    """(frames, C, H, W) uint8: the loop through `seeds`' latents. `label`: a conditional
    generator's class for the whole walk (None: each seed's own class, as `generate` draws it)."""
    if len(seeds) < 2:
        raise UserError("a walk needs at least two seeds, e.g. --walk 0,7,42")
    if len(seeds) > MAX_WAYPOINTS:
        raise UserError(f"a walk takes at most {MAX_WAYPOINTS} seeds, not {len(seeds)}")
    if any(not 0 <= seed < 2**63 for seed in seeds):
        raise UserError("a walk's seeds must be integers in [0, 2**63)")
    if not MIN_FRAMES <= frames <= MAX_FRAMES:
        raise UserError(f"--frames must be between {MIN_FRAMES} and {MAX_FRAMES}, not {frames}")
    if frames < len(seeds):
        raise UserError(f"{frames} frames cannot visit {len(seeds)} seeds: pass --frames {len(seeds)} or more")
    classes = [label] * len(seeds) if label is not None or not is_conditional(generator) \
        else class_labels(generator, seeds).tolist()
    parts = []
    for i, length in enumerate(segment_lengths(frames, len(seeds))):
        j = (i + 1) % len(seeds)
        parts.append(interpolate(generator, seeds[i], seeds[j], length + 1, class_from=classes[i],
                                 class_to=classes[j], truncation=truncation)[:-1])
    return torch.cat(parts)


def scale_factor(resolution: int) -> int:
    return max(1, -(-VIDEO_SIZE // resolution))


def upscale(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """(F, C, H, W) uint8 -> (F, H * factor, W * factor, 3) uint8, nearest neighbour, grey as RGB."""
    frames = frames.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    return frames.permute(0, 2, 3, 1).contiguous()


def check_output(path: str | Path, fps: float) -> None:
    """One-line errors for a video file that cannot be written as asked, before any frame is made."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"a walk is written as .mp4, .gif or .webp, not {path.name!r}")
    if not 1 <= fps <= MAX_FPS:
        raise UserError(f"fps must be between 1 and {MAX_FPS}, not {fps:g}")
    if suffix == ".gif" and fps > MAX_GIF_FPS:
        raise UserError(f"a GIF plays at most {MAX_GIF_FPS} fps (its delays are whole hundredths of a second); "
                        f"write .mp4 or .webp for {fps:g}")
    if suffix == ".mp4":
        try:
            import av  # noqa: F401
        except ImportError:
            raise UserError(f"MP4 needs PyAV (it ships its own FFmpeg): {EXTRA}; or write .gif or .webp") from None
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")


def save_walk(frames: torch.Tensor, path: str | Path, fps: float = 24.0) -> None:
    """Write (F, C, H, W) uint8 frames as a looping .mp4, .gif or .webp, atomically."""
    check_output(path, fps)
    path = Path(path)
    suffix = path.suffix.lower()
    pictures = upscale(frames, scale_factor(frames.shape[-1])).numpy()
    if suffix == ".mp4":
        write = _mp4_writer(pictures, fps)
    else:
        write = _pillow_writer(pictures, fps, "GIF" if suffix == ".gif" else "WEBP")
    atomic_write(path, write)


def _pillow_writer(pictures, fps: float, kind: str):
    from PIL import Image

    images = [Image.fromarray(picture) for picture in pictures]
    delay = round(1000 / fps, -1) if kind == "GIF" else round(1000 / fps)  # GIF: whole hundredths
    options = dict(format=kind, save_all=True, append_images=images[1:], duration=delay, loop=0)
    if kind == "WEBP":
        options.update(lossless=True, quality=100, method=4)
    return lambda tmp: images[0].save(tmp, **options)


def _mp4_writer(pictures, fps: float):
    from fractions import Fraction

    import av

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = pictures.shape[2], pictures.shape[1]
            stream.pix_fmt = "yuv420p"  # what every player plays
            stream.options = {"crf": "12", "preset": "medium"}
            for picture in pictures:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            container.mux(stream.encode())  # flush

    return write


def read_video(path: str | Path) -> torch.Tensor:
    """(F, H, W, 3) uint8 frames of a video file (MP4 through PyAV; GIF and WebP through Pillow)."""
    import numpy as np

    path = Path(path)
    if path.suffix.lower() == ".mp4":
        import av

        with av.open(str(path)) as container:
            return torch.from_numpy(np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]))
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return torch.from_numpy(np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]))
