"""What record and drive share with the machine: capture sources, key readers and senders, the platform table,
pacing, countdown and hotkeys, and the key guard."""
