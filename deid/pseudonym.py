"""Keyed pseudonyms: HMAC-SHA256 under named domains, for UIDs, IDs, dates and names.

The run's key is never used directly: each kind of pseudonym has a domain (`uid`,
`patient`, `date-offset` ...) whose own key is HMAC(run key, domain name), so a value
hashed for one purpose can never be matched against the same value hashed for another.
The same key gives the same pseudonym on any machine, in any order and in any worker,
with no shared state; without a key each run draws a fresh random one, so two runs
cannot be linked. New UIDs live under the `2.25.` root (a UUID-derived integer).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from pydicom._uid_dict import UID_dictionary

DOMAINS: dict[str, str] = {
    "uid": "new UIDs for original ones (study, series, instance, frame of reference ...)",
    "patient": "the patient pseudonym in names, IDs and output folders",
    "date-offset": "each patient's date shift, in days",
    "id": "other identifiers (accession number, study ID ...), one sub-domain per attribute",
    "output-name": "the study, series and instance parts of output file names",
    "input": "the manifest's id of an input path",
}
_UID_MAX_DIGITS = 39
_DIGIT_RUN = re.compile(r"\d{7}")  # 2.25. + 39 digits stays under the 64-character UI limit


@dataclass(frozen=True)
class Pseudonymizer:
    """Derives every pseudonym of a run from one secret key."""

    key: bytes

    @classmethod
    def from_passphrase(cls, passphrase: str | None) -> Pseudonymizer:
        """A key from the user's passphrase, or a random one when none is given."""
        if passphrase is None:
            return cls(secrets.token_bytes(32))
        if not passphrase:
            raise ValueError("the pseudonym key must not be empty")
        return cls(hashlib.sha256(b"deid-key\0" + passphrase.encode("utf-8")).digest())

    def digest(self, kind: str, value: str) -> bytes:
        """HMAC of `value` under `kind`: a domain of `DOMAINS`, or `domain:sub`."""
        return _digest(self.key, kind, value)

    def code(self, kind: str, value: str, length: int = 10) -> str:
        """A short upper-case code, e.g. for IDs and folder names.

        Codes never hold a run of seven digits, so no pseudonym looks like an MRN to a
        leak check; a code that would is drawn again from the next digest.
        """
        return _code(self.key, kind, value, length)

    def uid(self, value: str) -> str:
        """A new UID for an original one; well-known standard UIDs are kept as they are."""
        value = value.strip().rstrip("\0")
        if not value or value in UID_dictionary:
            return value
        number = int.from_bytes(self.digest("uid", value)[:16], "big")
        return f"2.25.{number}"[: 5 + _UID_MAX_DIGITS]

    def patient(self, identity: str) -> str:
        """The pseudonym that stands for one patient in names, IDs and folders."""
        return f"ANON{self.code('patient', identity, 8)}"

    def identifier(self, kind: str, value: str) -> str:
        """A pseudonymous ID (accession number, study ID ...) of at most 16 characters."""
        return self.code(f"id:{kind}", value, 12)


@functools.lru_cache(maxsize=64)
def domain_key(key: bytes, domain: str) -> bytes:
    """The key of one named domain, derived from the run's key."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown pseudonym domain {domain!r}")
    return hmac.digest(key, f"deid-domain\0{domain}".encode(), "sha256")


# The slices of a series share their study, series and patient values: each is hashed once.
@functools.lru_cache(maxsize=4096)
def _digest(key: bytes, kind: str, value: str) -> bytes:
    domain, _, sub = kind.partition(":")
    return hmac.digest(domain_key(key, domain), f"{sub}\0{value}".encode(), "sha256")


@functools.lru_cache(maxsize=4096)
def _code(key: bytes, kind: str, value: str, length: int) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for attempt in range(100):
        salt = f"{value}\0{attempt}" if attempt else value
        number = int.from_bytes(_digest(key, kind, salt), "big")
        chars = []
        for _ in range(length):
            number, rem = divmod(number, 32)
            chars.append(alphabet[rem])
        code = "".join(chars)
        if not _DIGIT_RUN.search(code):
            return code
    raise AssertionError("no code without a digit run in 100 draws")
