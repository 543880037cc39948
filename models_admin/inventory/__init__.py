"""What hosts hold and held: ingest of agent reports, the per-model summary, snapshot history,
reports over time and the retention that thins them."""
