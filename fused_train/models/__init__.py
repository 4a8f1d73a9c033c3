"""Models trained by fused-train; each trains many folds at once through a leading slot dimension."""
