"""crew2: teach a neural network to play a driving game from its screen."""

__version__ = "0.1.0"
