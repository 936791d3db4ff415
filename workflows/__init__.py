"""Dunning workflows: the pure policy core and its durable Temporal driver."""
