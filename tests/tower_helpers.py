"""Helpers the tower tests share (imported by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


def settle_batchnorm(tower: nn.Module) -> nn.Module:
    """Give ``tower``'s BatchNorm layers statistics as after training (fresh ones fold into
    identical all-zero biases, which the exporter stores once and shares between convs)."""
    with torch.no_grad():
        for m in tower.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    return tower
