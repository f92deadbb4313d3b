"""The notMNIST class names: label k is the letter ``CLASSES[k]`` (A=0 ... J=9).

Their own module, so that the data readers, the argument checks and the weights files name the
letters from one place without importing one another.
"""

from __future__ import annotations

__all__ = ["CLASSES"]

#: the notMNIST class names, label 0 ... 9
CLASSES = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")
