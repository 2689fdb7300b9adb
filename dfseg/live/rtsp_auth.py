"""Whether an RTSP server refuses a URL's credentials, asked of the server itself.

OpenCV says only that a capture did not open; FFmpeg's reason (``method DESCRIBE failed: 401
Unauthorized``) goes to its log, which dfseg-run silences and no caller can read.  So when an
``rtsp://`` stream does not open, one DESCRIBE (RFC 2326) of our own tells refused credentials from
every other failure: unauthenticated first, and on ``401`` again with the URL's user name and
password, answering the server's challenge as FFmpeg does (Digest, RFC 2617, where offered, else
Basic).  The password goes only to the server that the URL names, as opening the stream sends it;
it is never part of a result.

Device side: Python 3.6, standard library only.
"""

import base64
import hashlib
import os
import re
import socket
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

# No example URL with userinfo in these: messages are redacted, which would mask it.
REFUSED = ("the server refused the user name and password (RTSP 401 Unauthorized); check them in the URL "
           "(USER:PASSWORD before the host, with any : @ / % in them percent-encoded)")
REQUIRED = ("the server asks for a user name and password (RTSP 401 Unauthorized); put them in the URL "
            "before the host, as USER:PASSWORD@HOST")
_PARAMETER = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_DIGESTS = {"MD5": hashlib.md5, "MD5-SESS": hashlib.md5, "SHA-256": hashlib.sha256, "SHA-256-SESS": hashlib.sha256}
Response = Tuple[int, List[Tuple[str, str]]]  # status code, (lower-case header name, value) in order


def credentials_problem(url: str, timeout: float) -> Optional[str]:
    """``REFUSED`` when the server answers 401 to ``url``'s credentials, ``REQUIRED`` when it wants
    credentials that ``url`` does not give; None when it accepts them, answers anything else, or
    cannot be asked (so another reason made the stream fail)."""
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() != "rtsp" or not parts.hostname:
            return None
        port = parts.port or 554
    except ValueError:  # a port that is not a number
        return None
    host = parts.hostname
    netloc = "[{}]".format(host) if ":" in host else host
    plain = urlunsplit((parts.scheme, netloc + (":{}".format(parts.port) if parts.port else ""), parts.path or "/",
                        parts.query, ""))
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            status, headers = _describe(connection, plain, 1, None)
            if status != 401:
                return None
            if parts.username is None:
                return REQUIRED
            challenges = [value for name, value in headers if name == "www-authenticate"]
            authorization = _authorization(challenges, unquote(parts.username), unquote(parts.password or ""), plain)
            if authorization is None:
                return None  # a scheme we cannot answer: FFmpeg's reason is not ours to guess
            status, _ = _describe(connection, plain, 2, authorization)
    except (OSError, ValueError, UnicodeError):
        return None
    return REFUSED if status == 401 else None


def _describe(connection: socket.socket, url: str, cseq: int, authorization: Optional[str]) -> Response:
    lines = ["DESCRIBE {} RTSP/1.0".format(url), "CSeq: {}".format(cseq), "Accept: application/sdp",
             "User-Agent: dfseg"]
    if authorization:
        lines.append("Authorization: " + authorization)
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    return _read_response(connection)


def _read_response(connection: socket.socket) -> Response:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk or len(data) > 65536:
            raise ValueError("no complete RTSP response")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split()
    if len(status_line) < 2 or not status_line[0].startswith("RTSP/"):
        raise ValueError("not an RTSP response")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    length = int(dict(headers).get("content-length", "0") or 0)
    while len(body) < length:  # read the body off so that the next response starts clean
        chunk = connection.recv(min(65536, length - len(body)))
        if not chunk:
            break
        body += chunk
    return int(status_line[1]), headers


def _authorization(challenges: List[str], user: str, password: str, url: str) -> Optional[str]:
    """The Authorization header value answering the best challenge (Digest before Basic), or None."""
    by_scheme = {}  # type: Dict[str, str]
    for challenge in challenges:
        scheme, _, parameters = challenge.partition(" ")
        by_scheme.setdefault(scheme.lower(), parameters)
    if "digest" in by_scheme:
        return _digest(_parameters(by_scheme["digest"]), user, password, "DESCRIBE", url)
    if "basic" in by_scheme:
        return "Basic " + base64.b64encode("{}:{}".format(user, password).encode("utf-8")).decode("ascii")
    return None


def _parameters(text: str) -> Dict[str, str]:
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _PARAMETER.finditer(text)}


def _digest(challenge: Dict[str, str], user: str, password: str, method: str, url: str,
            cnonce: Optional[str] = None) -> Optional[str]:
    algorithm = challenge.get("algorithm", "MD5")
    digest = _DIGESTS.get(algorithm.upper())
    realm, nonce = challenge.get("realm"), challenge.get("nonce")
    if digest is None or realm is None or nonce is None:
        return None

    def hexdigest(text: str) -> str:
        return digest(text.encode("utf-8")).hexdigest()

    cnonce = cnonce or base64.b16encode(os.urandom(8)).decode("ascii").lower()
    secret = hexdigest("{}:{}:{}".format(user, realm, password))
    if algorithm.upper().endswith("-SESS"):
        secret = hexdigest("{}:{}:{}".format(secret, nonce, cnonce))
    request = hexdigest("{}:{}".format(method, url))
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    fields = [("username", user), ("realm", realm), ("nonce", nonce), ("uri", url)]
    if "auth" in qops:
        response = hexdigest("{}:{}:00000001:{}:auth:{}".format(secret, nonce, cnonce, request))
        extra = ['qop=auth', 'nc=00000001', 'cnonce="{}"'.format(cnonce)]
    elif qops:
        return None  # auth-int only
    else:
        response = hexdigest("{}:{}:{}".format(secret, nonce, request))
        extra = []
    fields.append(("response", response))
    if "opaque" in challenge:
        fields.append(("opaque", challenge["opaque"]))
    if "algorithm" in challenge:
        extra.append("algorithm={}".format(algorithm))
    return "Digest " + ", ".join(['{}="{}"'.format(name, value) for name, value in fields] + extra)
