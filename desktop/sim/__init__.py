"""Durability simulation: churning amateur nodes driving the real placement and repair code."""
