import pytest
import torch

from dcgan.checkpoint import (
    atomic_write,
    load_checkpoint,
    load_generator,
    load_state_checked,
    save_checkpoint,
    save_generator,
)
from dcgan.errors import UserError
from dcgan.models import build_generator

KWARGS = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint-last.pt"
    save_checkpoint({"step": 1}, path)

    def crash(tmp):
        tmp.write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pt"]  # no temp file left


def test_not_a_checkpoint_is_a_user_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01 random bytes")
    with pytest.raises(UserError, match="not a readable dcgan checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(UserError, match="not a dcgan checkpoint"):
        load_checkpoint(other)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dcgan-checkpoint-v1", "obj": torch.nn.Linear(1, 1)}, path)
    with pytest.raises(UserError, match="not a readable dcgan checkpoint"):
        load_checkpoint(path)  # weights_only=True refuses whole modules


def test_shape_mismatch_names_both_shapes():
    small = build_generator(**KWARGS)
    large = build_generator(**{**KWARGS, "base_channels": 16})
    with pytest.raises(UserError, match=r"main.0.weight has shape \(16, 64, 4, 4\) in the checkpoint "
                                        r"but \(16, 32, 4, 4\) in the model"):
        load_state_checked(small, large.state_dict(), "generator")


def test_generator_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    G = build_generator(**KWARGS).eval()
    save_generator(G, KWARGS, tmp_path / "generator.safetensors")
    loaded, kwargs = load_generator(tmp_path)  # a folder means its generator.safetensors
    assert kwargs == KWARGS
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(loaded(z), G(z))
