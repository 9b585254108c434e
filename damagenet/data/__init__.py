"""What the models read: dataset NPZ splits, scene pairs on a map grid, and training ground."""
