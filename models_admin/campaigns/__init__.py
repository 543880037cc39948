"""Campaigns: one proposal and one approval over many hosts, rolled out in waves.

``plan`` works out what a campaign would do (the preview: per host the files, the bytes, the
warnings, the skipped hosts and why) and ``rollout`` is its state machine (approve, waves,
pause, resume, halt, cancel). Each host's part is an ordinary PruneRequest opened through
``workflow.open_campaign_request``, so identity checks, outcomes, restore and audit are the
requests' own.
"""
