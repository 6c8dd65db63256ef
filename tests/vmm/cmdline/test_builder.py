"""The builder keeps options in command-line order and appends to tuples without loss."""

from __future__ import annotations

from sevlaunch.vmm.cmdline.builder import Builder


def test_set_and_add() -> None:
    b = Builder()
    b.set(name="g", memory=1 << 20)
    b.add("ignored", "-a")
    b.add("ignored", "-b")
    assert (b.cfg.name, b.cfg.memory, b.cfg.ignored) == ("g", 1 << 20, ("-a", "-b"))
