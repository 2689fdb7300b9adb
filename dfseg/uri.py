"""Credentials never leave the process: every URI that is shown or logged goes through ``redact``.

A camera URL such as ``rtsp://admin:s3cret@cam/stream`` is needed as it is to open the stream,
but in a message, a status page or a log it becomes ``rtsp://***@cam/stream``; secret-looking
query parameters (``?token=...``) are masked the same way.  Device side: Python 3.6.
"""

import re
from typing import List, Optional

MASK = "***"
# scheme://userinfo@ : the userinfo runs to the last '@' before the first '/' or white space, so a
# password holding an unencoded '@' is masked whole.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")
_SECRET_QUERY = re.compile(
    r"([?&](?:password|passwd|pass|pwd|token|access_token|api_key|apikey|key|secret|auth|sig|signature)=)[^&\s#]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the userinfo and secret query values of every URI in it masked."""
    return _SECRET_QUERY.sub(r"\g<1>" + MASK, _USERINFO.sub(r"\g<1>" + MASK + "@", str(text)))


def file_path(text: str) -> str:
    """The path a ``file://`` URI names, or ``text`` itself."""
    return text[len("file://"):] if text.startswith("file://") else text


def local_path(text: str) -> Optional[str]:
    """The local file or folder an input names (a path or ``file://``), None for a camera or stream URL."""
    path = file_path(text)
    return None if "://" in path else path


def local_inputs(text: str) -> List[str]:
    """``[local_path(text)]`` for a local input, ``[]`` for a camera or stream: the inputs an output
    must not overwrite."""
    path = local_path(text)
    return [path] if path is not None else []
