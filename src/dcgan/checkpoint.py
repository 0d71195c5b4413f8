"""Checkpoints: state dicts + model arguments + step, written atomically, read with weights_only.

`checkpoint-*.pt` holds the complete training state (models, EMA, optimizers, scaler, RNG and
data-order state). `generator.safetensors` holds only the EMA generator's weights, with its
constructor arguments in the file's metadata, so it loads with nothing else beside it.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from dcgan import __version__
from dcgan.errors import UserError
from dcgan.files import atomic_write
from dcgan.models import MODEL_FAMILIES, build_generator

FORMAT = "dcgan-checkpoint-v1"


def save_checkpoint(state: dict, path: Path) -> None:
    state = {"format": FORMAT, "version": __version__, **state}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # through Python's file: a failed write keeps its OSError
            torch.save(state, handle)

    atomic_write(path, write)


CHECKPOINT_EXPECTED = "a dcgan checkpoint (.pt) written by `dcgan train`"
GENERATOR_EXPECTED = "a dcgan generator.safetensors written by `dcgan train`"

# The first bytes of the formats a wrong file most often is, for "it is a PNG image, not ...".
MAGIC = [(b"PK\x03\x04", "a zip archive"), (b"PK\x05\x06", "an empty zip archive"), (b"\x89PNG", "a PNG image"),
         (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"\x93NUMPY", "a NumPy .npy array"),
         (b"\x1f\x8b", "a gzip archive"), (b"\x80", "a Python pickle")]


def describe_file(path: Path) -> str:
    """What a file that failed to load looks like, for an error message: 'empty (0 bytes)', 'a PNG image', ..."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as error:
        return f"unreadable ({error.strerror or type(error).__name__})"
    if size == 0:
        return "empty (0 bytes)"
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "a safetensors file"
    if b"\x00" not in head and any(_is_utf8(head[:len(head) - cut]) for cut in range(4)):  # a character cut at 512
        return "a text file"
    return "binary data of no known format"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def reason(error: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (or its type), cut to `limit` characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def torch_load_problem(path: Path, error: Exception) -> str:
    """Why torch.load(weights_only=True) failed on `path`, as "it is ...": never torch's own text, which
    names internals (miniz, utf-8 codecs) and advises weights_only=False."""
    what = describe_file(path)
    if what == "a zip archive":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except Exception:
            return "it is a truncated or corrupt PyTorch file"
        if not any(name.endswith("data.pkl") for name in names):
            return "it is a zip archive, but not a PyTorch file"
        if isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error):
            return "it holds Python objects besides tensors, which are refused (loading them could run code)"
        return "it is a truncated or corrupt PyTorch file"
    if what == "a Python pickle":  # torch.save's format before 1.6, or a plain pickle
        return "it is a Python pickle that does not load as tensors (an old or corrupt PyTorch file?)"
    return f"it is {what}, not a PyTorch file"


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes); expected {CHECKPOINT_EXPECTED}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path} is not a readable dcgan checkpoint: {torch_load_problem(path, error)}; "
                        f"expected {CHECKPOINT_EXPECTED}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a dcgan checkpoint (no '{FORMAT}' marker); expected {CHECKPOINT_EXPECTED}")
    return state


def load_state_checked(module: nn.Module, state_dict: dict, what: str) -> None:
    """load_state_dict, but a mismatch names the parameter and both shapes in one line."""
    check_state_shapes(module, state_dict, what)
    module.load_state_dict(state_dict)


def check_state_shapes(module: nn.Module, state_dict: dict, what: str) -> None:
    """That `state_dict` has exactly `module`'s tensors, each of its shape (`module` may live on the
    meta device); else one line naming the first difference."""
    if not isinstance(state_dict, dict):
        raise UserError(f"{what}: the checkpoint holds a {type(state_dict).__name__} where a state dict belongs")
    own = module.state_dict()
    for name, tensor in own.items():
        if name in state_dict and not isinstance(state_dict[name], torch.Tensor):
            raise UserError(f"{what}: {name} is a {type(state_dict[name]).__name__} in the checkpoint, not a tensor")
        if name not in state_dict:
            raise UserError(f"{what}: the checkpoint has no {name}; it was saved from another architecture")
        if tuple(state_dict[name].shape) != tuple(tensor.shape):
            raise UserError(f"{what}: {name} has shape {tuple(state_dict[name].shape)} in the checkpoint "
                            f"but {tuple(tensor.shape)} in the model; it was saved from another architecture")
    extra = sorted(set(state_dict) - set(own))
    if extra:
        raise UserError(f"{what}: the checkpoint has {extra[0]}, which the model lacks; "
                        f"it was saved from another architecture")


# The largest size a constructor argument read from a file may ask for: far past any model this
# toolkit trains, far below what would exhaust memory before the tensors are compared.
ARGUMENT_LIMITS = {"z_dim": 4096, "img_resolution": 1024, "img_channels": 4, "base_channels": 4096,
                   "num_classes": 100_000, "depth": 64}


def build_checked(build, kwargs: dict, state_dict: dict, *, path: Path, what: str) -> nn.Module:
    """A module from constructor arguments read from a file, checked before anything is allocated:
    each size argument an integer within ARGUMENT_LIMITS, then the module built on the meta device
    (no memory) and its tensor shapes compared with the file's; only then built for real."""
    for key, limit in ARGUMENT_LIMITS.items():
        value = kwargs.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise UserError(f"{path}: the {what} argument {key}={str(value)[:40]} is not a whole number from 0 to "
                            f"{limit:,}; the file is damaged or was not written by dcgan")
    if "class_names" in kwargs:
        from dcgan.models import check_class_names

        check_class_names(kwargs["class_names"], f"{path}")
    try:
        with torch.device("meta"):
            skeleton = build(**kwargs)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # arguments of another version or family
        raise UserError(f"{path} has damaged metadata: the {what} arguments {json.dumps(kwargs, default=str)[:160]} "
                        f"do not build a {what} ({reason(error)})") from None
    check_state_shapes(skeleton, state_dict, f"{what} from {path}")
    return build(**kwargs)


def save_generator(generator: nn.Module, kwargs: dict, path: Path, extra: dict | None = None,
                   dtype: torch.dtype | None = None, family: str = "dcgan") -> None:
    """The generator's weights and buffers (floating ones as `dtype` if given: float16 halves a
    shipped file) with its constructor arguments in the metadata; it loads into float32."""
    metadata = {"format": "dcgan-generator-v1", "family": family, "version": __version__,
                "generator_kwargs": json.dumps(kwargs), **{k: json.dumps(v) for k, v in (extra or {}).items()}}
    save_module_file(generator, path, metadata, dtype)


def save_module_file(module: nn.Module, path: Path, metadata: dict[str, str], dtype: torch.dtype | None) -> None:
    """A network's weights and buffers as safetensors with `metadata`, atomically; floating tensors
    as `dtype` if given."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


DISCRIMINATOR_EXPECTED = "a dcgan discriminator.safetensors shipped beside a generator"


def save_discriminator(discriminator: nn.Module, kwargs: dict, path: Path, dtype: torch.dtype | None = None) -> None:
    """A discriminator's weights with its constructor arguments, as `save_generator` writes a generator:
    what a shipped model carries so that it can be fine-tuned (`dcgan train --init-from NAME`)."""
    metadata = {"format": "dcgan-discriminator-v1", "version": __version__, "discriminator_kwargs": json.dumps(kwargs)}
    save_module_file(discriminator, path, metadata, dtype)


def read_discriminator(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(float32 state dict, constructor arguments) of a file `save_discriminator` wrote."""
    tensors, metadata = read_safetensors(path, DISCRIMINATOR_EXPECTED)
    if metadata.get("format") != "dcgan-discriminator-v1":
        raise UserError(f"{path} is not a dcgan discriminator (no 'dcgan-discriminator-v1' metadata); "
                        f"expected {DISCRIMINATOR_EXPECTED}")
    try:
        kwargs = json.loads(metadata["discriminator_kwargs"])
    except (KeyError, ValueError):
        raise UserError(f"{path} has no readable discriminator_kwargs; expected {DISCRIMINATOR_EXPECTED}") from None
    if not isinstance(kwargs, dict):
        raise UserError(f"{path}: discriminator_kwargs are not a mapping; expected {DISCRIMINATOR_EXPECTED}")
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, kwargs


def read_safetensors(path: Path, expected: str = "a safetensors file"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; an unreadable one is a one-line UserError ending in `expected`."""
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except Exception:  # safetensors' text ("HeaderTooLarge", "InvalidHeaderDeserialization") says little
        what = describe_file(path)
        if what == "empty (0 bytes)":
            raise UserError(f"{path} is empty (0 bytes); expected {expected}") from None
        if what == "a zip archive":
            what = "a zip archive (a PyTorch checkpoint?)"
        problem = "it is truncated or corrupt" if what == "a safetensors file" else f"it is {what}"
        raise UserError(f"{path} is not a readable safetensors file: {problem}; expected {expected}") from None


def read_generator_file(path: Path) -> tuple[dict[str, torch.Tensor], dict, str]:
    """(state dict, constructor arguments, model family) of a generator .safetensors file."""
    tensors, metadata = read_safetensors(path, GENERATOR_EXPECTED)
    if metadata.get("format") != "dcgan-generator-v1":
        raise UserError(f"{path} is not a dcgan generator (no 'dcgan-generator-v1' metadata); "
                        f"expected {GENERATOR_EXPECTED}")
    return tensors, _generator_kwargs(path, metadata), metadata.get("family", "dcgan")


def _generator_kwargs(path: Path, metadata: dict[str, str]) -> dict:
    """The generator constructor arguments in a generator file's metadata."""
    try:
        kwargs = json.loads(metadata["generator_kwargs"])
    except KeyError:
        raise UserError(f"{path} has no generator_kwargs in its metadata; expected {GENERATOR_EXPECTED}") from None
    except ValueError as error:
        raise UserError(f"{path}: generator_kwargs in its metadata are not valid JSON ({reason(error)}); "
                        f"expected {GENERATOR_EXPECTED}") from None
    if not isinstance(kwargs, dict):
        raise UserError(f"{path}: generator_kwargs in its metadata are a {type(kwargs).__name__}, not a mapping; "
                        f"expected {GENERATOR_EXPECTED}")
    return kwargs


def model_name(path: str | Path) -> str:
    """What a checkpoint is called on the web page and in exports: its run folder's name (for a
    folder, or its generator.safetensors / checkpoint-last.pt), else the file's stem."""
    path = Path(path).resolve()
    if path.is_dir():
        return path.name
    return path.parent.name if path.stem in ("generator", "checkpoint-last") else path.stem


def resolve_generator_path(path: str | Path) -> Path:
    """A run folder means its generator.safetensors (or checkpoint-last.pt); a file is itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("generator.safetensors", "checkpoint-last.pt"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path} holds no generator.safetensors or checkpoint-last.pt")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def load_generator(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True):
    """Load the (EMA) generator from a run folder, generator.safetensors or a checkpoint .pt.

    Returns (generator in eval mode, its constructor kwargs).
    """
    path = resolve_generator_path(path)
    if path.suffix == ".safetensors":
        state_dict, kwargs, family = read_generator_file(path)
        standing = False
    else:
        state = load_checkpoint(path)
        kwargs = state.get("generator_kwargs")
        if not isinstance(kwargs, dict):
            raise UserError(f"{path} holds no generator_kwargs mapping; expected {CHECKPOINT_EXPECTED}")
        family = state.get("family", "dcgan")
        key = "G_ema" if use_ema and state.get("G_ema") is not None else "G"
        if key not in state:
            raise UserError(f"{path} holds no generator weights ({key}); expected {CHECKPOINT_EXPECTED}")
        state_dict = state[key]
        standing = key == "G_ema"  # generator files hold the EMA weights with standing statistics
    if family not in MODEL_FAMILIES:
        raise UserError(f"{path} holds a generator of the model family {str(family)[:40]!r}; this version of "
                        f"dcgan builds {', '.join(MODEL_FAMILIES)}")
    generator = build_checked(lambda **a: build_generator(family, **a), kwargs, state_dict, path=path,
                              what="generator")
    load_state_checked(generator, state_dict, f"generator from {path}")
    generator = generator.to(device).eval()
    if standing:
        from dcgan.training.ema import standing_statistics

        generator = standing_statistics(generator)
    return generator, kwargs
