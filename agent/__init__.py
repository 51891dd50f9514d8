"""voxloop's agent: what is heard, decided and said. Never imports a transport."""

__version__ = "0.1.0"
