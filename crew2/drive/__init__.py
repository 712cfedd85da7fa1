"""Driving a game: key decoding, crash-prevention fusion, key senders, the control loop, telemetry."""
