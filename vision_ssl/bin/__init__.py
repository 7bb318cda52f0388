"""Command-line entry points (``python -m vision_ssl.bin.<name>``), one per recipe stage."""
