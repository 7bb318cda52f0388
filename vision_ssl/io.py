"""File helpers of the vision entry points: the core's atomic writers (:mod:`compact_ssl.io`)."""

from compact_ssl.io import write_json

__all__ = ["write_json"]
