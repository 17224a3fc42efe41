"""The training augmentation as batched tensor ops on the device (the parameters come from ``augment.py``).

One ``grid_sample`` per batch does crop, resize, flip and rotation together (each output pixel is mapped
back through the rotation, the flip and the crop window into the cached image, bilinearly); pixels that
the rotation brings in from outside the crop are black, as albumentations' constant border makes them;
then brightness and contrast. Every op is a fixed-shape tensor op with no host synchronisation, so the
whole view can run inside a captured CUDA graph.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class TensorAugment(torch.nn.Module):
    """(B, 1, S, S) uint8 images and (B, 8) parameters (``augment.PARAMS``) -> (B, 1, S, S) float in [0, 255]."""

    def __init__(self, size: int) -> None:
        super().__init__()
        # pixel centres in normalised coordinates (align_corners=False): the output grid, built once
        c = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        self.register_buffer("base", torch.stack([xx, yy], -1).view(1, size * size, 2), persistent=False)
        self.size = size

    def forward(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        b, s = images.shape[0], self.size
        p = params.float()
        w, h, cx, cy, flip, angle, bright, contrast = p.unbind(1)
        theta = angle * (math.pi / 180.0)
        cos, sin = torch.cos(theta), torch.sin(theta)
        sign = 1.0 - 2.0 * flip  # -1 flips
        x, y = self.base[..., 0], self.base[..., 1]  # (1, S*S)
        # output -> rotated back -> flipped back: a point of the (cropped, resized) view, in [-1, 1]^2 inside it
        qx = (cos[:, None] * x - sin[:, None] * y) * sign[:, None]
        qy = sin[:, None] * x + cos[:, None] * y
        inside = ((qx.abs() <= 1) & (qy.abs() <= 1)).float()
        # the view's point -> the cached image: the crop window's centre and half-extent, normalised
        gx = (2 * cx - 1)[:, None] + qx * w[:, None]
        gy = (2 * cy - 1)[:, None] + qy * h[:, None]
        grid = torch.stack([gx, gy], -1).view(b, s, s, 2)
        # "border": the crop lies inside the image, so only the half pixel at its edge can reach past it
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = out * inside.view(b, 1, s, s)
        out = out * (1.0 + contrast).view(b, 1, 1, 1) + (bright * 255.0).view(b, 1, 1, 1)
        return out.clamp_(0.0, 255.0).round_()
