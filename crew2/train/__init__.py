"""Training the multi-task network: config, loop, metrics, checkpoints and reports."""
