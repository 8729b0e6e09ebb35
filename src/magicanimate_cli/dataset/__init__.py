"""Training data: the DATA folder's layout, preparing it from videos, and reading it for `train`."""
