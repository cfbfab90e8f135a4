"""The credential codec base: what every credential inherits, checked once per class.

These pin the shared framing (``wire/credential_base.py``) rather than any one layout: the
smallest record each class accepts is exactly its ``MIN_SIZE`` (so count bounds are tight), a
trailing byte is an error naming the record, the marker-signed bytes wrap the body, and a
counted section keeps what it read before a bad record.
"""

from __future__ import annotations

import pytest

from ztnode.errors import DecodeError
from ztnode.wire.buffer import Reader, Writer
from ztnode.wire.credential_base import (
    EMPTY_SIGNATURE,
    SIGN_MARKER,
    CredentialCodec,
    MarkerSigned,
    read_counted,
    write_counted,
)
from ztnode.wire.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    Revocation,
    Tag,
)

H = bytes.fromhex
FOREIGN_SIG = H("020000")  # a non-Ed25519 signature block of length 0
NO_EXTRA = H("0000")

# The smallest encoding of each record: its fields at their shortest, a foreign empty signature
# block where it has one, and no extension.
SMALLEST: dict[type[CredentialCodec], bytes] = {
    Capability: bytes(8 + 8 + 4) + H("0000") + H("01") + bytes(5) + NO_EXTRA,
    Tag: bytes(8 + 8 + 4 + 4 + 5 + 5) + FOREIGN_SIG + NO_EXTRA,
    CertificateOfOwnership: bytes(8 + 8 + 8 + 4) + H("0000") + bytes(10) + FOREIGN_SIG + NO_EXTRA,
    Revocation: bytes(4 + 4 + 8 + 4 + 4 + 8 + 8 + 5 + 5 + 1) + FOREIGN_SIG + NO_EXTRA,
}


@pytest.mark.parametrize("kind", list(SMALLEST), ids=lambda k: k.__name__)
def test_min_size_is_the_smallest_record(kind: type[CredentialCodec]) -> None:
    wire = SMALLEST[kind]
    assert len(wire) == kind.MIN_SIZE
    kind.decode(wire)
    with pytest.raises(DecodeError):
        kind.decode(wire[:-1])


@pytest.mark.parametrize("kind", [*SMALLEST, CertificateOfMembership], ids=lambda k: k.__name__)
def test_trailing_bytes_name_the_record(kind: type[CredentialCodec]) -> None:
    wire = SMALLEST.get(kind, H("01 0000 0000000000".replace(" ", "")))
    kind.decode(wire)
    with pytest.raises(DecodeError, match=f"^{kind.LABEL}: 1 unexpected trailing bytes"):
        kind.decode(wire + b"\0")


@pytest.mark.parametrize(
    "record",
    [
        Tag(1, 2, 0x1122334455000001, 7, 0x0102030405, 0x1122334455),
        CertificateOfOwnership(0x1122334455000001, 7, 1, 0x0102030405),
        Revocation(1, 0x1122334455000001, 2, 7, 1, 0x0102030405, 3, 0x1122334455),
    ],
    ids=lambda r: type(r).__name__,
)
def test_marker_signed_frame(record: MarkerSigned) -> None:
    body = Writer()
    record._write_body(body)
    assert record.signing_message() == SIGN_MARKER + bytes(body.buf) + NO_EXTRA + SIGN_MARKER
    wire = record.encode()
    assert wire == bytes(body.buf) + H("010060") + EMPTY_SIGNATURE + NO_EXTRA
    assert type(record).decode(wire) == record
    # A foreign signature block is skipped and leaves the empty signature.
    assert type(record).decode(bytes(body.buf) + H("030002abcd") + NO_EXTRA) == record


def test_read_counted_keeps_records_before_a_bad_one() -> None:
    tag = Tag(1, 2, 3, 4, 5)
    w = Writer()
    write_counted(w, (tag, tag))
    wire = bytes(w.buf)
    assert wire[:2] == H("0002")
    got: list[Tag] = []
    read_counted(Reader(wire), Tag, got, "tag count", "tags")
    assert got == [tag, tag]
    got.clear()
    with pytest.raises(DecodeError):
        read_counted(Reader(wire[:-1]), Tag, got, "tag count", "tags")
    assert got == [tag]
    with pytest.raises(DecodeError):  # a count the bytes left cannot hold
        read_counted(Reader(H("ffff") + wire[2:]), Tag, [], "tag count", "tags")
