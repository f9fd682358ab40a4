"""helpers: the thin package behind the course notebooks for fine-tuning Whisper (see README.md)."""

__version__ = "0.1.0"
