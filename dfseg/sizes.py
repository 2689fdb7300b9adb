"""Input sizes.  dfseg always writes sizes in video order, WIDTHxHEIGHT (640x360), while the paper
writes height x width (1024x2048).  Device side: Python 3.6, no torch."""

from typing import NamedTuple, Optional, Tuple, Union

from .errors import UserError

NAMED_SIZES = {
    "360p": (640, 360),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "cityscapes": (2048, 1024),
    "imagenet": (224, 224),
}


# The largest side a network input may have: beyond any camera (8K is 7680x4320), and small enough
# that a typo such as 100000x100000 is refused before anything tries to allocate it.
MAX_SIDE = 16384
# Bytes of activations per input pixel at the widest point of a DF-Seg network, with margin (float32:
# the image, the 1/2- and 1/4-resolution stem maps, and the full-resolution class scores).
BYTES_PER_PIXEL = 4 * 48


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
    if not (is_decimal(width) and is_decimal(height)) or int(width) < 32 or int(height) < 32:
        raise SizeError(
            "size {!r}: use 360p, 720p, 1080p, WIDTHxHEIGHT in video order (e.g. 640x360, "
            "2048x1024) or N for NxN; each side at least 32".format(text)
        )
    size = Size(int(width), int(height))
    check_memory(size, str(text))
    return size


def check_memory(size: Size, given: str = "") -> None:
    """Refuse a size whose sides exceed MAX_SIDE, or whose activations alone would not fit in this
    machine's memory, before any model is built or run at it."""
    where = "size {!r}".format(given or str(size))
    if size.width > MAX_SIDE or size.height > MAX_SIDE:
        raise SizeError("{}: each side at most {} pixels".format(where, MAX_SIDE))
    needed = size.width * size.height * BYTES_PER_PIXEL
    total = _physical_memory()
    if total is not None and needed > total:
        raise SizeError("{}: its activations need about {:.1f} GB, more than this machine's {:.1f} GB; use a "
                        "smaller size".format(where, needed / 1e9, total / 1e9))


def _physical_memory() -> Optional[int]:
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() then refuses."""
    return bool(text) and all("0" <= c <= "9" for c in text)


SizeLike = Union[Size, str, Tuple[int, int]]


def as_size(size: SizeLike) -> Size:
    """``Size`` from a Size, a (width, height) pair or a size string (``360p``, ``640x360``)."""
    if isinstance(size, Size):
        return size
    if isinstance(size, str):
        return parse_size(size)
    width, height = size
    return Size(int(width), int(height))
