"""Training: the one loop (fit), the classifier run (trainer), recipes, run records, TensorBoard."""
