"""The one exception type of the data layer.

Every problem with a dataset on disk is reported as a `DatasetError` that names the offending
file (or folder) and says what is wrong with it, so that a user can go straight to the file.
It subclasses `ValueError` because a bad dataset is bad input, and callers that already catch
`ValueError` keep working.
"""
from __future__ import annotations

import os
from pathlib import Path


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent.

    Attributes:
        path: the file or folder the problem is about.
        problem: what is wrong, without the path.

    ``DatasetError(message)`` with a single argument is also accepted (``path`` is then None):
    torch's DataLoader re-raises a worker's exception in the main process that way, with the
    worker's message and traceback, which still name the file.
    """

    def __init__(self, path: str | os.PathLike, problem: str | None = None):
        if problem is None:
            self.path, self.problem = None, str(path)
            super().__init__(self.problem)
            return
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Keep the (path, problem) signature when the error crosses a DataLoader worker's pipe.
        if self.path is None:
            return (type(self), (self.problem,))
        return (type(self), (self.path, self.problem))
