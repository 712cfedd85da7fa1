"""The multi-task network (shared YOLO backbone, key head, obstacle head), its losses and checkpoints."""
