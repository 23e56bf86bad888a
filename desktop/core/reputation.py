"""Node reputation, sans-I/O: Beta-style scores with forgetting, like Storj's audit reputation.

Each node has two Beta(alpha, beta) estimates, one for audits and one for being reachable.
Every observation first multiplies both parameters by a forgetting factor `lambda`, then adds
one to alpha (success) or beta (failure). The score is alpha / (alpha + beta): old behaviour
fades, so a node that was good for a year and starts losing data falls within a handful of
audits, and one unlucky failure of a long-good node barely moves it.

With lambda = 0.95 the estimates remember about 1 / (1 - lambda) = 20 observations. A new node
starts at alpha = 1, beta = 0 (score 1); one failed audit before any success drops it to
0.95 / 1.95 = 0.49, below the default disqualification threshold of 0.6, while a node with 20
passed audits (alpha = 13.2) stays at 0.80 after three failures in a row and is disqualified
at the eighth.

Vetting: a node that has not yet passed `vetting_audits` audits gets only a few shares per
file (see `placement.choose_nodes(max_unvetted=...)`), so a new node that lies costs little.
Disqualified nodes (audit score below the threshold) get no new shares at all, and their
shares count as unhealthy so repair moves them elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ReputationParams:
    audit_forget: float = 0.95
    uptime_forget: float = 0.98
    disqualify_below: float = 0.6
    vetting_audits: int = 3
    latency_ewma: float = 0.3
    min_uptime_weight: float = 0.05


DEFAULT_PARAMS = ReputationParams()


@dataclass(frozen=True)
class NodeReputation:
    """What one challenger has seen of one node (persisted by the daemon)."""

    audit_alpha: float = 1.0
    audit_beta: float = 0.0
    audits_passed: int = 0
    audits_failed: int = 0
    uptime_alpha: float = 1.0
    uptime_beta: float = 0.0
    reachable: int = 0
    unreachable: int = 0
    latency_ms: float | None = None

    def audited(self, ok: bool, params: ReputationParams = DEFAULT_PARAMS) -> NodeReputation:
        lam = params.audit_forget
        return replace(
            self,
            audit_alpha=lam * self.audit_alpha + (1.0 if ok else 0.0),
            audit_beta=lam * self.audit_beta + (0.0 if ok else 1.0),
            audits_passed=self.audits_passed + (1 if ok else 0),
            audits_failed=self.audits_failed + (0 if ok else 1),
        )

    def observed(
        self,
        reachable: bool,
        latency_ms: float | None = None,
        params: ReputationParams = DEFAULT_PARAMS,
    ) -> NodeReputation:
        """One contact attempt: reachable or not, and how long the answer took."""
        lam = params.uptime_forget
        latency = self.latency_ms
        if reachable and latency_ms is not None and latency_ms >= 0:
            weight = params.latency_ewma
            latency = (
                latency_ms if latency is None else (1 - weight) * latency + weight * latency_ms
            )
        return replace(
            self,
            uptime_alpha=lam * self.uptime_alpha + (1.0 if reachable else 0.0),
            uptime_beta=lam * self.uptime_beta + (0.0 if reachable else 1.0),
            reachable=self.reachable + (1 if reachable else 0),
            unreachable=self.unreachable + (0 if reachable else 1),
            latency_ms=latency,
        )

    @property
    def audit_score(self) -> float:
        return self.audit_alpha / (self.audit_alpha + self.audit_beta)

    @property
    def uptime_score(self) -> float:
        return self.uptime_alpha / (self.uptime_alpha + self.uptime_beta)

    def vetted(self, params: ReputationParams = DEFAULT_PARAMS) -> bool:
        return self.audits_passed >= params.vetting_audits

    def disqualified(self, params: ReputationParams = DEFAULT_PARAMS) -> bool:
        return self.audit_score < params.disqualify_below

    def placement_weight(self, params: ReputationParams = DEFAULT_PARAMS) -> float:
        """Multiplier of a node's placement weight: 0 when disqualified, otherwise the audit
        score times the uptime score (floored, so a node that was offline for a while still
        gets a little and can prove itself again)."""
        if self.disqualified(params):
            return 0.0
        return self.audit_score * max(self.uptime_score, params.min_uptime_weight)
