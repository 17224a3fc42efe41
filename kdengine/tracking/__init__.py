"""Experiment trackers (Neptune, TensorBoard, MLflow) and the MLflow export: optional views of the run store."""
