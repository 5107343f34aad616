"""What this machine's device can do, as the attention, precision and quantisation choices need it.

One small record, read once from torch and the installed packages; the decisions in attention.py,
precision.py and speed.py take it as an argument, so tests can hand them a T4 or an H100.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass, field
from typing import Any

# Optional packages the speed options use, by the import name each one needs.
OPTIONAL_PACKAGES = {"sageattention": "sageattention", "flash_attn_3": "flash_attn_interface", "torchao": "torchao"}


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    name: str = "CPU"
    capability: tuple[int, int] | None = None  # CUDA compute capability, e.g. (9, 0) for Hopper
    cudnn: int | None = None  # torch.backends.cudnn.version(), e.g. 90100
    packages: frozenset[str] = field(default_factory=frozenset)  # keys of OPTIONAL_PACKAGES found

    @property
    def native_bfloat16(self) -> bool:
        # Ampere (8.0) and newer compute in bfloat16; older cards only emulate it.
        return bool(self.cuda and self.capability and self.capability >= (8, 0))

    @property
    def fp8(self) -> bool:
        return bool(self.cuda and self.capability and self.capability >= (8, 9))  # Ada and Hopper

    @property
    def hopper(self) -> bool:
        return bool(self.cuda and self.capability and self.capability[0] == 9)

    def describe(self) -> str:
        if not self.cuda:
            return "the CPU"
        major, minor = self.capability or (0, 0)
        return f"the {self.name} (compute {major}.{minor})"


def of(device: Any) -> Hardware:
    """The Hardware of a torch device (the CPU, or a CUDA GPU)."""
    import torch

    packages = frozenset(k for k, module in OPTIONAL_PACKAGES.items() if importlib.util.find_spec(module) is not None)
    if device.type != "cuda":
        return Hardware(cuda=False, name=platform.processor() or platform.machine() or "CPU", packages=packages)
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return Hardware(
        cuda=True,
        name=props.name,
        capability=(props.major, props.minor),
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        packages=packages,
    )
