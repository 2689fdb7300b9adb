"""Input sizes.  dfseg always writes sizes in video order, WIDTHxHEIGHT (640x360), while the paper
writes height x width (1024x2048).  Device side: Python 3.6, no torch."""

from typing import NamedTuple, Tuple, Union

from .errors import UserError

NAMED_SIZES = {
    "360p": (640, 360),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "cityscapes": (2048, 1024),
    "imagenet": (224, 224),
}


class SizeError(UserError):
    """A size string cannot be parsed; the message says which forms are accepted."""


class Size(NamedTuple):
    width: int
    height: int

    def __str__(self) -> str:
        return "{}x{}".format(self.width, self.height)

    @property
    def label(self) -> str:
        """The friendly name where one exists (720p), else WIDTHxHEIGHT."""
        for name, value in NAMED_SIZES.items():
            if value == tuple(self) and name.endswith("p"):
                return name
        return str(self)


def parse_size(text: str) -> Size:
    """Parse ``360p``/``720p``/``1080p``, ``WIDTHxHEIGHT`` (video order) or a bare ``N`` (NxN)."""
    value = str(text).strip().lower()
    if value in NAMED_SIZES:
        return Size(*NAMED_SIZES[value])
    width, sep, height = value.partition("x")
    if not sep:
        width = height = value
    if not (width.isdigit() and height.isdigit()) or int(width) < 32 or int(height) < 32:
        raise SizeError(
            "size {!r}: use 360p, 720p, 1080p, WIDTHxHEIGHT in video order (e.g. 640x360, "
            "2048x1024) or N for NxN; each side at least 32".format(text)
        )
    return Size(int(width), int(height))


SizeLike = Union[Size, str, Tuple[int, int]]


def as_size(size: SizeLike) -> Size:
    """``Size`` from a Size, a (width, height) pair or a size string (``360p``, ``640x360``)."""
    if isinstance(size, Size):
        return size
    if isinstance(size, str):
        return parse_size(size)
    width, height = size
    return Size(int(width), int(height))
