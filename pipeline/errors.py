"""One exception type for every refusal the pipeline makes.

The command line turns a :class:`PipelineError` into a one-line message and exit status 2, so a
user sees *which file* and *what is wrong* instead of a traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Bad input or an unusable external resource, with a message meant for the user."""
