"""Command-line entry points of the ICBHI recipe stages (``python -m audio_cls.bin.<verb>``)."""
