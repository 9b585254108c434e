"""The networks, their checkpoints and model cards, and the import of the study's weights."""
