"""The mutable state while options are read, in command-line order; ``resolve`` modules turn
it into the frozen :class:`~sevlaunch.vmm.cmdline.config.VmConfig` once every option is in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sevlaunch.vmm.cmdline.config import (
    BlockdevConfig,
    ChardevConfig,
    DeviceConfig,
    ObjectConfig,
    SevGuestConfig,
    SevSnpGuestConfig,
    VmConfig,
)


@dataclass
class Builder:
    """What options have said so far; the simple settings go straight into ``cfg``."""

    cfg: VmConfig = field(default_factory=VmConfig)
    objects: list[SevGuestConfig | SevSnpGuestConfig | ObjectConfig] = field(default_factory=list)
    chardevs: dict[str, ChardevConfig] = field(default_factory=dict)
    monitors: list[str] = field(default_factory=list)
    serial_specs: list[str] = field(default_factory=list)
    blockdevs: dict[str, BlockdevConfig] = field(default_factory=dict)
    devices: list[DeviceConfig] = field(default_factory=list)
    bios: str | None = None

    def set(self, **changes: Any) -> None:
        self.cfg = replace(self.cfg, **changes)

    def add(self, name: str, item: object) -> None:
        self.set(**{name: (*getattr(self.cfg, name), item)})


Action = Callable[[Builder, str], None]
