"""Capacity: when files were last used, who holds them now, disk-space forecasts, and plans to free space.

``usage`` keeps what agents report about use (atime with its mount's trust, holders seen
through /proc) and the daily disk series; ``planner`` answers "free X GB"; ``forecast``
fits the series. Policies built on them live in ``models_admin.capacity.policies`` with the others.
"""
