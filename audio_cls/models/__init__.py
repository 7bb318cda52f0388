"""AST backbone, heads and checkpoint loading."""

from audio_cls.models.ast import (
    ARCHS,
    INITS,
    ASTBackbone,
    ASTBackboneConfig,
    adapt_pos_embed,
    build_ast,
    get_arch,
    read_checkpoint,
    timm_to_hf,
)
from audio_cls.models.heads import Classifier, Projector
from compact_ssl.nn import count_parameters

__all__ = [
    "ARCHS", "ASTBackbone", "ASTBackboneConfig", "Classifier", "INITS", "Projector", "adapt_pos_embed", "build_ast",
    "count_parameters", "get_arch", "read_checkpoint", "timm_to_hf",
]
