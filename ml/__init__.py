"""Fast-MpoxNet: model, training, evaluation, inference and Grad-CAM. A plain PyTorch library (no Django)."""
