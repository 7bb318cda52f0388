"""Respiratory sound classification: AST with Patch-Mix contrastive learning on ICBHI 2017."""
