"""SAS: label a whole scene from a list of words by fusing several language sources by what each is good at."""

from .method import SAS

__all__ = ["SAS"]
