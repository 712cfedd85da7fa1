"""Obstacle detection: the YOLO head's helpers, annotation tools and YOLO dataset I/O."""
