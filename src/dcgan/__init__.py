"""dcgan: train, evaluate and serve DCGAN-family image generators."""

__version__ = "0.1.0"
