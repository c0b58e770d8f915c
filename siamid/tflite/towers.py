"""Which registered towers are small enough for a microcontroller (``profile.fits_microcontroller``)
at their own default size: what CI exports to .tflite and the benchmark measures. Needs torch.

A tower's cost is counted on the torch module at batch 1, as the int8 export stores it: each
convolution and linear layer keeps its kernel as int8 and one int32 bias per output channel
(BatchNorm folds into it), and costs output elements x (input channels / groups) x kernel area
(a linear layer: outputs x inputs) MACs, the count ``siamid profile`` makes on the exported file.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

__all__ = ["TowerCost", "mcu_sized_towers", "tower_cost", "tower_defaults"]


@dataclass(frozen=True)
class TowerCost:
    name: str
    embedding_size: int
    in_channels: int
    input_size: int
    int8_weight_bytes: int
    macs: int

    @property
    def mcu_sized(self) -> bool:
        from ..profile import fits_microcontroller

        return fits_microcontroller(self.int8_weight_bytes, self.macs)


def tower_defaults(name: str) -> dict[str, int]:
    """The embedding size, input channels and input size a registered tower's factory defaults
    to (create_tower's own defaults where a factory does not say)."""
    from .. import nets

    factory = getattr(nets, "_REGISTRY", {}).get(name, (None,))[0]
    out = {"embedding_size": 16, "in_channels": 1, "input_size": 96}
    if factory is not None:
        for key, param in inspect.signature(factory).parameters.items():
            if key in out and param.default is not inspect.Parameter.empty:
                out[key] = int(param.default)
    return out


def tower_cost(name: str, **sizes: int) -> TowerCost:
    """int8 weight bytes and MACs of tower ``name`` at its defaults (or the given ``sizes``)."""
    import torch
    from torch import nn

    from ..nets import create_tower

    args = dict(tower_defaults(name), **sizes)
    tower = create_tower(name, args["embedding_size"], args["in_channels"],
                         args["input_size"]).eval()
    macs = weight_bytes = 0

    def hook(module, inputs, output):
        nonlocal macs, weight_bytes
        out_channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        weight_bytes += module.weight.numel() + 4 * out_channels
        if isinstance(module, nn.Conv2d):
            macs += output.numel() * (module.in_channels // module.groups) * math.prod(
                module.kernel_size)
        else:
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in tower.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        tower(torch.zeros((1, args["in_channels"], args["input_size"], args["input_size"])))
    for h in handles:
        h.remove()
    return TowerCost(name, args["embedding_size"], args["in_channels"], args["input_size"],
                     weight_bytes, macs)


def mcu_sized_towers() -> list[TowerCost]:
    """The registered towers that are MCU-sized at their defaults, by name."""
    from ..nets import list_towers

    return [cost for cost in map(tower_cost, list_towers()) if cost.mcu_sized]
