"""The lock-free cached property: computed on first read, then read from the instance, even on
a frozen dataclass; each instance its own value."""

from __future__ import annotations

from dataclasses import dataclass, field

from sevlaunch.formats._cached import cached


@dataclass(frozen=True)
class Doubled:
    value: int
    calls: list[int] = field(default_factory=list, compare=False)

    @cached
    def twice(self) -> int:
        """Two times the value."""
        self.calls.append(self.value)
        return 2 * self.value


def test_the_value_is_computed_once_per_instance() -> None:
    one, other = Doubled(3), Doubled(5)
    assert (one.twice, one.twice, other.twice) == (6, 6, 10)
    assert (one.calls, other.calls) == ([3], [5])
    assert one.__dict__["twice"] == 6  # found before the descriptor from now on


def test_the_class_attribute_is_the_descriptor_with_its_doc() -> None:
    descriptor = Doubled.__dict__["twice"]
    assert Doubled.twice is descriptor
    assert isinstance(descriptor, cached)
    assert descriptor.__doc__ == "Two times the value."
    assert descriptor.name == "twice"
