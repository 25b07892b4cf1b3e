"""Builders of the 1-Lipschitz architectures (LipConvnet/SOC, CPL, SLL, Sandwich/LBDN).

Each module provides ``build(input_shape, num_classes, generator, head, **options) -> LipschitzClassifier``;
``params/architectures.yaml`` names the family and its options, :func:`lipcert.models.build_model` dispatches.
"""
