"""Download decisions, sans I/O: which k shares to read from which nodes, and what to do when
one of them fails.

Primary shares (0..k-1) are preferred: decoding from them is a copy, not a zfec solve. Among
the rest, faster nodes (lower latency score) win. A node that fails (unreachable, timed out)
is dropped with all its shares; a share that fails verification is dropped on that node only.
Every reason is kept so the final error names the culprits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from desktop.core.errors import NotEnoughShares


class DownloadPlanner:
    def __init__(self, k: int, latency: Mapping[str, float] | None = None) -> None:
        self.k = k
        self._latency = dict(latency or {})
        self._where: dict[int, list[str]] = {}
        self.bad_nodes: dict[str, str] = {}
        self.bad_shares: dict[tuple[int, str], str] = {}

    # ---- what we learn ---------------------------------------------------------------------

    def add_location(self, shnum: int, node_id: str) -> None:
        nodes = self._where.setdefault(shnum, [])
        if node_id not in nodes:
            nodes.append(node_id)

    def add_locations(self, node_id: str, shnums: Iterable[int]) -> None:
        for shnum in shnums:
            self.add_location(shnum, node_id)

    def set_latency(self, node_id: str, seconds: float) -> None:
        self._latency[node_id] = seconds

    def node_failed(self, node_id: str, reason: str) -> None:
        self.bad_nodes.setdefault(node_id, reason)

    def share_failed(self, shnum: int, node_id: str, reason: str) -> None:
        self.bad_shares.setdefault((shnum, node_id), reason)

    # ---- decisions -------------------------------------------------------------------------

    def usable(self) -> dict[int, list[str]]:
        """Share number -> healthy nodes holding it, fastest first."""
        out: dict[int, list[str]] = {}
        for shnum, nodes in self._where.items():
            good = [
                n for n in nodes if n not in self.bad_nodes and (shnum, n) not in self.bad_shares
            ]
            if good:
                out[shnum] = sorted(good, key=self._speed_key)
        return out

    def _speed_key(self, node_id: str) -> tuple[float, str]:
        return self._latency.get(node_id, 1.0), node_id

    def _ranked(
        self, exclude_shares: Iterable[int], exclude_nodes: Iterable[str]
    ) -> list[tuple[int, str]]:
        skip_shares, skip_nodes = set(exclude_shares), set(exclude_nodes)
        options: list[tuple[int, str]] = []
        for shnum, nodes in self.usable().items():
            if shnum in skip_shares:
                continue
            free = [n for n in nodes if n not in skip_nodes]
            if free:
                options.append((shnum, free[0]))
        # Primaries first, then by node speed; ties by share number for determinism.
        return sorted(options, key=lambda o: (o[0] >= self.k, *self._speed_key(o[1]), o[0]))

    def choose(self) -> dict[int, str]:
        """k shares on k distinct nodes, or NotEnoughShares naming what went wrong."""
        chosen: dict[int, str] = {}
        while len(chosen) < self.k:
            # Distinct nodes spread the load; a node holding two shares is still better than
            # no file (files stored while few nodes existed).
            options = self._ranked(chosen, chosen.values()) or self._ranked(chosen, ())
            if not options:
                raise self.not_enough(len(chosen))
            shnum, node = options[0]
            chosen[shnum] = node
        return chosen

    def replacement(self, current: Mapping[int, str]) -> tuple[int, str] | None:
        """Another (share, node) not in `current`, to stand in for a failed one."""
        options = self._ranked(current, current.values()) or self._ranked(current, ())
        return options[0] if options else None

    def spare(self, current: Mapping[int, str]) -> tuple[int, str] | None:
        """The next best share after the chosen ones: kept ready so a switch costs no lookup."""
        return self.replacement(current)

    def not_enough(self, found: int | None = None, *, k_known: bool = True) -> NotEnoughShares:
        usable = len(self.usable()) if found is None else found
        need = f"need {self.k} good shares, found {usable}" if k_known else "no share is readable"
        problems = [f"node {n[:8]}: {why}" for n, why in self.bad_nodes.items()]
        problems += [f"share {s} on node {n[:8]}: {why}" for (s, n), why in self.bad_shares.items()]
        detail = f" ({'; '.join(problems[:5])})" if problems else ""
        return NotEnoughShares(f"cannot read the file: {need}{detail}")
