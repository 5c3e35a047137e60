"""Training on a dataset: the PyTorch dataset (``torch_data``); splits are in kernel.splits."""
