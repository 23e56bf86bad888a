"""Version vectors: one global vector per entry (device id -> highest seq the writer had merged).

Why global rather than per-path: a rename moves a whole subtree to other paths and a directory
operation touches many paths, so per-path vectors would have to be carried along and merged at
every move. A global vector orders any two entries, whatever path they touch; an account has a
handful of devices, so it stays small. Comparison is pointwise, which is a partial order even for
a buggy writer, so the incremental merge stays order independent.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VersionVector:
    items: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, int]) -> "VersionVector":
        return cls(tuple(sorted((d, s) for d, s in mapping.items() if s > 0)))

    def get(self, device: str) -> int:
        for d, s in self.items:
            if d == device:
                return s
        return 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.items)

    def join(self, other: "VersionVector") -> "VersionVector":
        merged = dict(self.items)
        for d, s in other.items:
            if s > merged.get(d, 0):
                merged[d] = s
        return VersionVector.from_mapping(merged)

    def with_seq(self, device: str, seq: int) -> "VersionVector":
        merged = dict(self.items)
        merged[device] = seq
        return VersionVector.from_mapping(merged)

    def leq(self, other: "VersionVector") -> bool:
        """Pointwise <=: everything self knows, other knows too."""
        theirs = dict(other.items)
        return all(s <= theirs.get(d, 0) for d, s in self.items)

    def total(self) -> int:
        """Sum of the components: strictly grows along causality, used as a sort key."""
        return sum(s for _, s in self.items)


def join_all(vectors: Iterable[VersionVector]) -> VersionVector:
    out = VersionVector()
    for v in vectors:
        out = out.join(v)
    return out
