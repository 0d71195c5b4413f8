"""dcgan: train, evaluate and serve DCGAN-family image generators.

The Python API (see dcgan.api): `load_generator`, `generate`, `evaluate`, `nearest`, `walk`, `train`, `TrainConfig`,
`UserError`. They load on first use, so `import dcgan` (and the CLI's start) stays light.
"""

__version__ = "0.1.0"
__all__ = ["TrainConfig", "UserError", "evaluate", "generate", "load_generator", "nearest", "train", "walk"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from dcgan.config import TrainConfig

        return TrainConfig
    if name == "UserError":
        from dcgan.errors import UserError

        return UserError
    if name in ("evaluate", "generate", "load_generator", "nearest", "train", "walk"):
        from dcgan import api

        return getattr(api, name)
    raise AttributeError(f"module 'dcgan' has no attribute {name!r}")
