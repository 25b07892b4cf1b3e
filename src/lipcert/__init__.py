"""lipcert: certified robustness with Lipschitz-margin training.

Implements the Calibrated Lipschitz-Margin Loss (CLL; Losch et al., GCPR 2023) and the
baselines it is compared with, on one harness: Lipschitz-bounded layers with converged
power-iteration bounds, losses, training, certification and the tightness attack.
"""

__version__ = "0.1.0"
