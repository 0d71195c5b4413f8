"""Latent walks (`dcgan generate --walk`): the frames are the interpolation strip's, the loop passes
through each seed's own image, and every file format decodes back to those frames."""

import pytest
import torch

import dcgan
from dcgan.models import build_generator
from dcgan.sampling import interpolate
from dcgan.video import read_video, segment_lengths, walk_frames
from test_cli import assert_one_line_error, dcgan_here
from test_cli import dcgan as run_dcgan


def test_segments_split_the_frames_evenly():
    assert segment_lengths(60, 3) == [20, 20, 20]
    assert segment_lengths(10, 3) == [4, 3, 3]
    assert sum(segment_lengths(61, 7)) == 61


def test_the_loop_is_the_interpolation_strips_through_each_seed(shipped_cars):
    frames = walk_frames(shipped_cars, [0, 7, 42], 10)  # segments of 4, 3, 3 frames
    assert frames.shape == (10, 3, 32, 32) and frames.dtype == torch.uint8
    assert torch.equal(frames[:4], interpolate(shipped_cars, 0, 7, 5)[:-1])
    assert torch.equal(frames[4:7], interpolate(shipped_cars, 7, 42, 4)[:-1])
    assert torch.equal(frames[7:], interpolate(shipped_cars, 42, 0, 4)[:-1])  # back to the start: a loop
    waypoints = dcgan.generate(shipped_cars, [0, 7, 42])
    assert (frames[[0, 4, 7]].int() - waypoints.int()).abs().max() <= 1  # slerp at t=0 is the seed's latent
    assert (frames[1:].int() - frames[:-1].int()).abs().float().mean() > 0  # it moves
    assert torch.equal(dcgan.walk("cifar10-cars", [0, 7, 42], frames=10), frames)  # the Python API: the same
    with pytest.raises(dcgan.UserError, match="fps must be between"):
        dcgan.walk("cifar10-cars", [0, 7], out="walk.webp", fps=0)


def test_a_conditional_walk_goes_from_each_seeds_class_to_the_next():
    torch.manual_seed(0)
    generator = build_generator(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch",
                                num_classes=3, class_names=["a", "b", "c"]).eval()
    with torch.no_grad():
        generator.main[-2].weight.mul_(30)
    across = walk_frames(generator, [1, 2], 6)
    assert (across[[0, 3]].int() - dcgan.generate(generator, [1, 2]).int()).abs().max() <= 1
    within = walk_frames(generator, [1, 2], 6, label=2)
    assert (within[[0, 3]].int() - dcgan.generate(generator, [1, 2], label=2).int()).abs().max() <= 1


@pytest.mark.parametrize("suffix, mean_limit, max_limit", [
    (".webp", 0, 0),  # lossless
    (".gif", 4, 64),  # a 256-colour palette per frame
    (".mp4", 3, 24),  # H.264 at crf 12, 4:2:0 chroma
])
def test_each_format_decodes_to_the_frames(shipped_cars, tmp_path, suffix, mean_limit, max_limit):
    out = tmp_path / f"walk{suffix}"
    code, stdout, stderr = run_dcgan("generate", "--model", "cifar10-cars", "--walk", "0,7,42", "--frames", 12,
                                     "--fps", 12, "--out", out)
    assert code == 0, stderr
    assert "12 frames at 12 fps (1.0 s, looping)" in stdout
    video = read_video(out)
    assert video.shape == (12, 256, 256, 3)  # 32 px scaled up 8 times
    blocks = video.reshape(12, 32, 8, 32, 8, 3).float().mean((2, 4)).permute(0, 3, 1, 2)  # back to 32 px
    difference = (blocks - walk_frames(shipped_cars, [0, 7, 42], 12).float()).abs()
    assert difference.mean() <= mean_limit and difference.max() <= max_limit


@pytest.mark.parametrize("args, fragment", [
    (["--walk", "3"], "a walk needs at least two seeds"),
    (["--walk", "0,x"], "--walk takes comma-separated seeds"),
    (["--walk", "0,1", "--frames", "1"], "--frames must be between 2 and 3600"),
    (["--walk", "0,1,2", "--frames", "2"], "2 frames cannot visit 3 seeds"),
    (["--walk", "0,1", "--out", "walk.avi"], "written as .mp4, .gif or .webp"),
    (["--walk", "0,1", "--num", "4"], "--walk takes its seeds itself"),
    (["--walk", "0,1", "--fps", "0"], "fps must be between 1 and 120"),
    (["--walk", "0,1", "--fps", "60", "--out", "w.gif"], "a GIF plays at most 50 fps"),
    (["--walk", "0,1", "--class", "car"], "this model is not class-conditional"),
    (["--frames", "10"], "--frames and --fps go with --walk"),
])
def test_bad_walk_arguments(capsys, args, fragment):
    assert_one_line_error(dcgan_here(capsys, "generate", "--model", "cifar10-cars", *args), fragment)
