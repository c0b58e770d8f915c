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


def wrong_bias_lowering(monkeypatch, steps: int = 4) -> None:
    """Make the TFLite lowering get its second CONV_2D's bias wrong by ``steps`` output steps
    (in the bias's own units, input scale x weight scale): a bug the export's checks must catch."""
    import numpy as np

    from siamid.tflite import lowering

    lower = lowering.lower

    def wrong(model, path="model"):
        lowered = lower(model, path)
        graph = lowered.graph
        conv = [op for op in graph.ops if op.code == "CONV_2D"][1]
        bias = graph.tensors[conv.inputs[2]]
        out_scale = graph.tensors[conv.outputs[0]].params[0]
        bias.data = bias.data + np.rint(steps * out_scale / bias.scale).astype(np.int32)
        return lowered

    monkeypatch.setattr(lowering, "lower", wrong)
