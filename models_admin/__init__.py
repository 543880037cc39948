"""The dashboard: hosts, snapshots, prune requests with two-person approval, audit."""
