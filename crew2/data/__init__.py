"""Session files and the tools around them (info, split, loading for training)."""
