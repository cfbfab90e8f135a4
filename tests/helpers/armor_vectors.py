"""Packets armored by ZeroTierOne, for the armor tests of the Python and C paths."""

from __future__ import annotations

from ztnode.crypto import SymmetricKey

H = bytes.fromhex


# §14 full-packet examples, key48 = 00 01 .. 2f.
KEY14 = SymmetricKey(bytes(range(48)))


PLAIN14 = H(
    "0102030405060708112233445566778899aa00000000000000000006030a11181f262d343b424950575e656c73"
    "7a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d14"
)


AES14 = H(
    "ac0607634d714cc1112233445566778899aa18c7c6882c649ce15a8caa3a6ec87b21beed35c3798278b97c8761"
    "e925d9dfcd9a54e5da4bd5881cc25e19ef6fd2de646b4e"
)


AES14_FRAGMENTED = H(
    "2a4241d7964c5a86112233445566778899aa58ff34b88761c344edc18f82ed75185c88d03124e539bc6d00a9de"
    "8e88505e0b9d7baef4d7362d0030723e9493461fccfa84"
)


SALSA14 = H(
    "0102030405060708112233445566778899aa887b274024048eaf72fee0a6ca6f5cddd862c2ead72d7bafd06afe"
    "ef10769c3c45daa6f977df54a0a53008ff6301f667a552"
)


POLY14_MAC = H("d428ec0a88b3a6e6")
