"""Periodic upkeep, run from the workers' maintenance tick and from management commands: the relay
(records Redis never got), the reaper (dead workers), the reconciler (records Redis lost, and the
workflows' catch-up) and retention.
"""
