"""FitNets: hints for thin deep nets (Romero et al., ICLR 2015).

A learned regressor maps the student's *guided* stage onto the teacher's *hint* stage, and the student learns to
match it:

    L = CE + w * MSE(r(f_s), f_t)

The regressor is a 1x1 convolution with batch norm and ReLU (mdistiller's ConvReg at equal sizes); where the two
stages differ in size the regressed map is resized to the teacher's by bilinear interpolation. The paper trains in
two stages (hints first, then the whole student with KD); kdstudy, as mdistiller, trains one stage, the hint loss
beside the cross-entropy from the first step. MSE is the mean over every element (``F.mse_loss``, the released
convention; the paper's 1/2 ||u - r(v)||^2 is a sum, a constant factor apart). Defaults: the middle stage, weight
100 (mdistiller's CIFAR-100 setting).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import Method, register_method, wide
from .taps import matching_stage, student_stages


def fit_size(x, size):
    """A feature map at another spatial size (bilinear), or as it is."""
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def hint_loss(regressed, teacher_map):
    return F.mse_loss(wide(fit_size(regressed, teacher_map.shape[-2:])), wide(teacher_map))


@register_method
class FitNet(Method):
    name = "fitnet"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.stage = student_stages(ctx.kd, ctx.student)[0]
        self.regressors = nn.ModuleList()
        for t in ctx.teachers:
            t_stage = matching_stage(self.stage, ctx.student, t)
            c_s, c_t = ctx.student.stage_channels[self.stage], t.stage_channels[t_stage]
            self.regressors.append(nn.Sequential(nn.Conv2d(c_s, c_t, 1), nn.BatchNorm2d(c_t), nn.ReLU(inplace=True)))

    @property
    def student_stages(self):
        return [self.stage]

    def teacher_stages(self, i):
        return [matching_stage(self.stage, self.ctx.student, self.ctx.teachers[i])]

    def distill(self, student, teacher, targets, index, i=0):
        regressed = self.regressors[i](student.features[0])
        return {"hint": self.ctx.kd.fitnet_weight * hint_loss(regressed, teacher.features[0])}
