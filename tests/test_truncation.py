"""Truncation: latent components beyond +-T drawn again from the seed's own generator; the same
images from the CLI, the Python API and the server."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import dcgan
from dcgan.cli import main
from dcgan.sampling import latents_from_seeds


def test_truncated_latents_are_within_bounds_and_keep_what_already_was():
    plain = latents_from_seeds(range(50), 100)
    for bound in (0.5, 1.0, 2.0):
        truncated = latents_from_seeds(range(50), 100, truncation=bound)
        assert truncated.abs().max() <= bound
        within = plain.abs() <= bound
        assert torch.equal(truncated[within], plain[within])  # only the components beyond the bound change
        assert not torch.equal(truncated, plain)
        assert torch.equal(truncated, latents_from_seeds(range(50), 100, truncation=bound))  # the seed decides
    assert torch.equal(latents_from_seeds([7], 100, truncation=1.0)[0], latents_from_seeds([3, 7], 100, 1.0)[1])
    assert torch.equal(latents_from_seeds(range(5), 100, truncation=50.0), plain[:5])
    with pytest.raises(ValueError, match="at least 0.05"):
        latents_from_seeds([0], 100, truncation=0.0)


def test_cli_api_and_server_give_the_same_truncated_images(shipped_cars, tmp_path, capsys):
    from dcgan.server import create_app

    images = dcgan.generate(shipped_cars, seeds=[4, 5], truncation=0.5)
    assert not torch.equal(images, dcgan.generate(shipped_cars, seeds=[4, 5]))
    assert main(["generate", "--model", "cifar10-cars", "--seed", "4", "--num", "2", "--truncation", "0.5",
                 "--outdir", str(tmp_path)]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "seed000005.png")), images[1].permute(1, 2, 0).numpy())
    client = create_app([], shipped=["cifar10-cars"]).test_client()
    served = client.get("/api/generate?model=cifar10-cars&seed=5&truncation=0.5")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.data))), images[1].permute(1, 2, 0).numpy())
    page = client.get("/?model=cifar10-cars&seed=4&num=2&truncation=0.5").get_data(as_text=True)
    assert 'value="0.5" selected' in page and "&amp;truncation=0.5" in page
    for bad, status in (("abc", 400), ("0.01", 400), ("1e3", 400), ("nan", 400)):
        response = client.get(f"/api/generate?model=cifar10-cars&seed=5&truncation={bad}")
        assert response.status_code == status and "truncation" in response.get_json()["error"], bad
    capsys.readouterr()
    assert main(["generate", "--model", "cifar10-cars", "--truncation", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "truncation must be between 0.05 and 100" in capsys.readouterr().err
