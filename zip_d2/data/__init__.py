"""Datasets: synthetic scenes with exact ground truth, COCO JSON validation and registration."""
