"""Training: losses, strategies, the trainer and the executor. Knows nothing of Textual."""
