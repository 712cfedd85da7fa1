"""Recording: frame sources, keyboard readers, the paced capture loop and the background writer."""
