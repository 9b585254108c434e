"""What several test modules share: paths, local servers in real service layouts, files in real
formats, small datasets and checkpoints, and the command-line helpers. Fixtures live in
``tests/conftest.py``; plain functions and classes live here."""
