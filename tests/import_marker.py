"""A module that a request names but must never import: importing it leaves a mark."""

from jobs import job

IMPORTED = True


@job
def marked():
    return "ran"
