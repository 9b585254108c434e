"""Training: the options record (``config``), the pair and pixel tasks (``tasks``) and their
losses (``losses``), the optimisation step and epoch (``steps``), provisional checkpoints
(``saving``) and the run that ties them together (``train``)."""
