"""Building models from timm: grayscale input, pretrained weights from timm or a local file."""
from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open
from timm.models import get_pretrained_cfg
from torch import nn

from ..errors import UsageError
from .architectures import PRETRAINED_ALIASES
from .names import check_name

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")




def input_channels(pretrained: bool, colour: bool = False) -> int:
    """Grayscale models get 1 channel; ImageNet weights need 3 (a grey image replicated); colour images have 3."""
    return 3 if pretrained or colour else 1


def resolve_pretrained_name(name: str, warn=print) -> str:
    if name in PRETRAINED_ALIASES:
        alias = PRETRAINED_ALIASES[name]
        warn(f"note: timm's '{name}' has no pretrained weights; using '{alias}', which has them")
        return alias
    return name


def _weights_file(path: Path, name: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in [path / name, path / PRETRAINED_ALIASES.get(name, name)]:
            if candidate.is_dir():
                path = candidate
                break
        for fname in WEIGHT_FILES:
            if (path / fname).is_file():
                return path / fname
        for ext in (".safetensors", ".pth", ".bin", ".pt"):
            for stem in (name, PRETRAINED_ALIASES.get(name, name)):
                if (path / f"{stem}{ext}").is_file():
                    return path / f"{stem}{ext}"
        raise UsageError(f"--pretrained-from {path}: no weights for '{name}' (looked for {', '.join(WEIGHT_FILES)} or {name}.safetensors)")
    raise UsageError(f"--pretrained-from: no such file or directory: {path}")


def create_model(name: str, num_classes: int, pretrained: bool = False, pretrained_from: str | None = None,
                 warn=lambda m: print(m, file=sys.stderr), colour: bool = False) -> nn.Module:
    """A timm model for ``num_classes`` classes.

    Without pretrained weights the stem takes 1 channel. With them it takes 3
    (the image is replicated), and the weights come from timm's hub, or from a
    local file or folder (``pretrained_from``) when there is no network. timm
    drops the ImageNet classifier when the class count differs.
    """
    name = check_name(name)
    chans = input_channels(pretrained, colour)
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=chans)
    name = resolve_pretrained_name(name, warn)
    kwargs = {}
    if pretrained_from:
        kwargs["pretrained_cfg_overlay"] = {"file": str(_weights_file(Path(pretrained_from).expanduser(), name))}
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=chans, **kwargs)
    except Exception as exc:  # noqa: BLE001 - no network, no file, a file that is not weights, weights that do not fit
        msg = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        where = f" from {kwargs['pretrained_cfg_overlay']['file']}" if kwargs else ""
        hint = "check the file" if kwargs else "offline? pass --pretrained-from FILE_OR_DIR"
        raise UsageError(f"cannot load pretrained weights for '{name}'{where}: {msg} ({hint})") from None


def count_params(name: str, num_classes: int = 7, in_chans: int = 1) -> int:
    with torch.device("meta"):
        model = timm.create_model(check_name(name), pretrained=False, num_classes=num_classes, in_chans=in_chans)
    return sum(p.numel() for p in model.parameters())


def check_buildable(name: str, image_size: int, pretrained: bool) -> None:
    """The model exists in timm and takes ``image_size`` images: proved on the meta device (no memory, no
    weights, milliseconds), so that it is known before anything is queued."""
    check_name(name)
    chans = input_channels(pretrained)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=2, in_chans=chans)
    check_image_size(model, name, image_size, chans, device="meta")


def check_pretrained_reachable(name: str, timeout: float = 3.0) -> None:
    """ImageNet weights for ``name`` can be had: in the local cache (Hugging Face's or torch hub's), or from a
    host that answers now. Else one line naming --pretrained-from, at once, instead of a minute of retries."""
    name = resolve_pretrained_name(name, lambda m: None)
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise UsageError(f"timm has no pretrained weights for '{name}' (pass --pretrained-from FILE_OR_DIR)")
    hosts = []
    if getattr(cfg, "hf_hub_id", None):
        repo = cfg.hf_hub_id.split("@")[0]
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
            return
        hosts.append("huggingface.co")
    if getattr(cfg, "url", None):
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if cached.is_file():
            return
        hosts.append(urlparse(cfg.url).hostname)
    for host in filter(None, hosts):
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return
        except OSError:
            continue
    raise UsageError(f"cannot get pretrained weights for '{name}': none in the local cache and "
                     f"{' or '.join(h for h in hosts if h) or 'no host'} cannot be reached (offline?); "
                     "pass --pretrained-from FILE_OR_DIR")


def check_weights_file(path: str, name: str) -> Path:
    """``--pretrained-from`` names a weights file for ``name`` that can be read: safetensors with a valid
    header, or a PyTorch checkpoint (zip or pickle). Only the header is read."""
    file = _weights_file(Path(path).expanduser(), resolve_pretrained_name(name, lambda m: None))
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise UsageError(f"--pretrained-from {file}: cannot read it ({exc.strerror})") from None
    if size == 0:
        raise UsageError(f"--pretrained-from {file}: the file is empty")
    if file.suffix == ".safetensors":
        try:
            with safe_open(str(file), framework="pt") as fh:
                if not list(fh.keys()):
                    raise UsageError(f"--pretrained-from {file}: the safetensors file holds no tensors")
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: not a safetensors file
            raise UsageError(f"--pretrained-from {file}: not a valid safetensors file "
                             f"({str(exc).splitlines()[0][:120]})") from None
    elif not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise UsageError(f"--pretrained-from {file}: not a PyTorch checkpoint or safetensors file")
    return file


def check_image_size(model: nn.Module, name: str, image_size: int, channels: int, device: str = "cpu") -> None:
    """Raise UsageError when the model cannot take images this small."""
    reduction = 1
    info = getattr(model, "feature_info", None)
    try:
        reduction = int(info[-1]["reduction"]) if info else 1
    except (TypeError, KeyError, IndexError):
        reduction = 1
    minimum = max(8, reduction)
    if image_size < minimum:
        raise UsageError(f"image size {image_size} is too small for '{name}' (at least {minimum})")
    if image_size < 128 or device == "meta":  # cheap enough to prove with one forward pass
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros(1, channels, image_size, image_size, device=device))
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"image size {image_size} is too small for '{name}' ({str(exc).splitlines()[0][:120]})") from None
        finally:
            model.train(was_training)
