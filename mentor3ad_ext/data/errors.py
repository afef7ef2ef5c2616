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
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Keep the (path, problem) signature when the error crosses a DataLoader worker's pipe.
        return (type(self), (self.path, self.problem))
