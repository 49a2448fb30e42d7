"""Controls on the main runs: the linear-encoder AE, convergence speed and training cost."""
