"""What the fleet holds now, per model: the summaries the models pages read."""
