"""fused_train: train fusion heads and baselines on cached embeddings across folds."""
