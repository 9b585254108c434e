"""The networks (the Siamese ResNet, the Siamese U-Net), the registry that rebuilds them from
checkpoints, their checkpoints and model cards, and the import of the study's weights."""
