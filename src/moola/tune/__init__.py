"""Hyperparameter search: Optuna studies and phases over ordinary recorded runs; Ray and
torch.distributed scale-out."""
