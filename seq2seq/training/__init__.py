"""The training loop, its schedules, checkpoints and metric logs."""
