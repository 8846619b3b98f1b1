"""The one "rejected with a reason" error of the project.

Everything that refuses an input (an undecodable image, a file that is no
bottleneck of this model, an unsafe name) raises a `Rejected`, or a subclass
that says which kind of input it was; the jobs turn it into a dead letter
whose reason is `reason`, one line a person can act on.
"""


class Rejected(ValueError):
    """An input that must not be used; `reason` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
