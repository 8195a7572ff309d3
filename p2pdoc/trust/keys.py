"""Private keys: signing keys, key agreement keys, signature algorithms and keys at rest.

Goals: one wrapper per key role whose ``repr`` and error messages never show key material;
signature verification that accepts the key types real agency tokens use (Ed25519, ECDSA
P-256/P-384, RSA 2048+ with PKCS#1 v1.5 or PSS) and translates every foreign error into
:class:`~p2pdoc.errors.SignatureInvalid`; key files that are either encrypted under a
passphrase or readable by their owner only.

Non-goals: hardware tokens (PKCS#11), key rotation policy, DSA, Ed448, NIST P-521.

Randomness for keys comes from the operating system (through ``cryptography``), never from
a seeded ``random.Random``: seeded generators drive simulations, not key generation.

Keys at rest are PKCS#8 PEM. With a passphrase the file is encrypted with
``BestAvailableEncryption``; without one it is plain PEM. Either way the file is created
with mode 0600 and written atomically (temporary file, fsync, rename), and loading refuses a
file whose mode grants any access to group or others.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519

from p2pdoc.errors import InvalidValue, KeyFileError, SignatureInvalid

__all__ = [
    "MAX_KEY_FILE_SIZE",
    "MIN_RSA_BITS",
    "AgreementKey",
    "KeyAlgorithm",
    "PublicKey",
    "SignatureAlgorithm",
    "SigningKey",
    "key_algorithm_of",
    "load_agreement_key",
    "load_signing_key",
    "public_key_id",
    "save_key",
    "verify_signature",
]

PublicKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
"""A signature public key of a supported type."""

_PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 16384
MAX_KEY_FILE_SIZE: Final = 64 * 1024


class KeyAlgorithm(enum.StrEnum):
    """The type of a signature key."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA = "rsa"


class SignatureAlgorithm(enum.StrEnum):
    """How a signature was computed; named inside every signed p2pdoc record.

    RSA-PSS uses MGF1 with SHA-256 and signs with a salt as long as the digest (32 bytes);
    verification accepts any salt length, as tokens differ.
    """

    ED25519 = "ed25519"
    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
    ECDSA_P384_SHA384 = "ecdsa-p384-sha384"
    RSA_PKCS1V15_SHA256 = "rsa-pkcs1v15-sha256"
    RSA_PSS_SHA256 = "rsa-pss-sha256"


_ALLOWED: Final[dict[KeyAlgorithm, tuple[SignatureAlgorithm, ...]]] = {
    # The first entry is the default for new signatures.
    KeyAlgorithm.ED25519: (SignatureAlgorithm.ED25519,),
    KeyAlgorithm.ECDSA_P256: (SignatureAlgorithm.ECDSA_P256_SHA256,),
    KeyAlgorithm.ECDSA_P384: (SignatureAlgorithm.ECDSA_P384_SHA384,),
    KeyAlgorithm.RSA: (SignatureAlgorithm.RSA_PSS_SHA256, SignatureAlgorithm.RSA_PKCS1V15_SHA256),
}


def key_algorithm_of(key: object) -> KeyAlgorithm | None:
    """The :class:`KeyAlgorithm` of a ``cryptography`` public or private key.

    Returns:
        None for unsupported types, curves, and RSA keys outside 2048..16384 bits.
    """
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return KeyAlgorithm.ED25519
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return KeyAlgorithm.ECDSA_P256
        if isinstance(key.curve, ec.SECP384R1):
            return KeyAlgorithm.ECDSA_P384
        return None
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return KeyAlgorithm.RSA if MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS else None
    return None


def public_key_id(public_key: PublicKey | x25519.X25519PublicKey) -> bytes:
    """SHA-256 of the key's DER SubjectPublicKeyInfo: a stable 32-byte key identifier."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def verify_signature(
    public_key: PublicKey, algorithm: SignatureAlgorithm, data: bytes, signature: bytes
) -> None:
    """Check ``signature`` over ``data`` under ``public_key`` with ``algorithm``.

    Raises:
        SignatureInvalid: the algorithm does not fit the key type, the key type is not
            supported, or the signature does not verify (also for malformed signatures).
    """
    if algorithm is SignatureAlgorithm.ED25519 and isinstance(
        public_key, ed25519.Ed25519PublicKey
    ):  # the common case, kept short
        try:
            public_key.verify(signature, data)
        except InvalidSignature:
            raise SignatureInvalid("signature does not verify") from None
        except TypeError:  # not bytes
            raise SignatureInvalid("malformed signature or data") from None
        return
    kind = key_algorithm_of(public_key)
    if kind is None:
        raise SignatureInvalid("the signer's key type or size is not supported")
    if algorithm not in _ALLOWED[kind]:
        raise SignatureInvalid(f"algorithm {algorithm} does not fit a {kind} key")
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            digest = hashes.SHA256() if kind is KeyAlgorithm.ECDSA_P256 else hashes.SHA384()
            public_key.verify(signature, data, ec.ECDSA(digest))
        elif algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            public_key.verify(signature, data, pss, hashes.SHA256())
        else:
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureInvalid("signature does not verify") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SignatureInvalid(f"signature cannot be checked: {type(exc).__name__}") from None


class SigningKey:
    """A private signature key (Ed25519 by default; ECDSA P-256/P-384 or RSA 2048+).

    ``repr`` shows the algorithm and the first bytes of the public key identifier only.
    The object cannot be pickled (``cryptography`` keys refuse it).
    """

    __slots__ = ("_algorithm", "_key", "_key_id", "_public")

    _key: _PrivateKey
    _algorithm: KeyAlgorithm
    _public: PublicKey
    _key_id: bytes

    def __init__(self, key: _PrivateKey) -> None:
        """Wrap a ``cryptography`` private key.

        Raises:
            InvalidValue: the key type, curve or size is not supported.
        """
        algorithm = key_algorithm_of(key)
        if algorithm is None:
            raise InvalidValue("unsupported signing key type, curve or size")
        self._key = key
        self._algorithm = algorithm
        self._public = key.public_key()
        self._key_id = public_key_id(self._public)

    @classmethod
    def generate(
        cls, algorithm: KeyAlgorithm = KeyAlgorithm.ED25519, *, rsa_bits: int = 3072
    ) -> SigningKey:
        """A fresh key from the operating system's random source."""
        if algorithm is KeyAlgorithm.ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate())
        if algorithm is KeyAlgorithm.ECDSA_P256:
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if algorithm is KeyAlgorithm.ECDSA_P384:
            return cls(ec.generate_private_key(ec.SECP384R1()))
        if not MIN_RSA_BITS <= rsa_bits <= MAX_RSA_BITS:
            raise InvalidValue(f"RSA keys must have {MIN_RSA_BITS}..{MAX_RSA_BITS} bits")
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits))

    @property
    def algorithm(self) -> KeyAlgorithm:
        return self._algorithm

    @property
    def public_key(self) -> PublicKey:
        return self._public

    @property
    def key_id(self) -> bytes:
        """SHA-256 of the public key's SubjectPublicKeyInfo."""
        return self._key_id

    @property
    def default_signature_algorithm(self) -> SignatureAlgorithm:
        return _ALLOWED[self._algorithm][0]

    def sign(self, data: bytes, algorithm: SignatureAlgorithm | None = None) -> bytes:
        """Sign ``data``.

        Args:
            algorithm: defaults to :attr:`default_signature_algorithm` (RSA-PSS for RSA).

        Raises:
            InvalidValue: ``algorithm`` does not fit this key's type.
        """
        algorithm = algorithm or self.default_signature_algorithm
        if algorithm not in _ALLOWED[self._algorithm]:
            raise InvalidValue(f"algorithm {algorithm} does not fit a {self._algorithm} key")
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            digest = (
                hashes.SHA256() if self._algorithm is KeyAlgorithm.ECDSA_P256 else hashes.SHA384()
            )
            return key.sign(data, ec.ECDSA(digest))
        if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
            return key.sign(data, _pss(), hashes.SHA256())
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def ed25519_private_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 private key, for handing to the libp2p host.

        Never log or persist the result; use :func:`save_key` to store the key.

        Raises:
            InvalidValue: not an Ed25519 key.
        """
        if not isinstance(self._key, ed25519.Ed25519PrivateKey):
            raise InvalidValue("only an Ed25519 key is a libp2p identity key")
        return self._key.private_bytes_raw()

    def _private(self) -> _PrivateKey:
        """The wrapped key, for the certificate authority and key files in this package."""
        return self._key

    def __repr__(self) -> str:
        return f"SigningKey({self._algorithm}, id={self._key_id[:6].hex()}…)"


class AgreementKey:
    """An X25519 key agreement key: a node's key for opening sealed documents."""

    __slots__ = ("_key", "_public")

    _key: x25519.X25519PrivateKey
    _public: bytes

    def __init__(self, key: x25519.X25519PrivateKey) -> None:
        if not isinstance(key, x25519.X25519PrivateKey):
            raise InvalidValue("an agreement key must be an X25519 private key")
        self._key = key
        self._public = key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> AgreementKey:
        return cls(x25519.X25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._public

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the raw public key: how sealed documents name this key."""
        return hashlib.sha256(self._public).digest()

    def exchange(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public``.

        Raises:
            InvalidValue: the peer key is not 32 bytes or yields the all-zero secret.
        """
        try:
            return self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:
            raise InvalidValue("unusable X25519 public key") from None

    def _private(self) -> x25519.X25519PrivateKey:
        return self._key

    def __repr__(self) -> str:
        return f"AgreementKey(x25519, fp={self.fingerprint[:6].hex()}…)"


# -- keys at rest -----------------------------------------------------------------------------


def _passphrase_bytes(passphrase: bytes | str | None) -> bytes | None:
    if passphrase is None:
        return None
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise InvalidValue("a passphrase must not be empty; pass None for an unencrypted file")
    return data


def save_key(
    path: str | os.PathLike[str],
    key: SigningKey | AgreementKey,
    *,
    passphrase: bytes | str | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``key`` to ``path`` as PKCS#8 PEM, mode 0600, atomically.

    Args:
        passphrase: encrypt the file under it (``BestAvailableEncryption``); None writes a
            plain PEM file that only its owner may read.
        overwrite: replace an existing file; otherwise an existing file is an error.

    Raises:
        KeyFileError: the file exists (and ``overwrite`` is false) or cannot be written.
            Nothing is left behind on failure.
    """
    target = Path(path)
    secret = _passphrase_bytes(passphrase)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret)
        if secret is not None
        else serialization.NoEncryption()
    )
    pem = key._private().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    directory = target.parent
    try:
        # mkstemp creates the file with mode 0600 whatever the umask.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise KeyFileError(str(target), f"cannot create a key file: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp_name, target)
        else:
            os.link(tmp_name, target)  # fails if the target exists
            os.unlink(tmp_name)
    except FileExistsError:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise KeyFileError(str(target), "already exists; refusing to overwrite a key") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise KeyFileError(str(target), f"cannot write the key file: {exc.strerror}") from None
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    target = str(Path(path))
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(target, f"cannot open the key file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(target, "is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                target,
                f"is accessible by group or others (mode {mode:04o}); a private key file "
                f"must be readable by its owner only: chmod 600 {target}",
            )
        if info.st_size > MAX_KEY_FILE_SIZE:
            raise KeyFileError(target, f"is larger than {MAX_KEY_FILE_SIZE} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise KeyFileError(target, f"cannot read the key file: {exc.strerror}") from None
    finally:
        os.close(fd)


def _load_private(
    path: str | os.PathLike[str], passphrase: bytes | str | None
) -> tuple[str, object]:
    target = str(Path(path))
    data = _read_key_file(path)
    secret = _passphrase_bytes(passphrase)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and secret is None:
        raise KeyFileError(target, "is encrypted; a passphrase is required")
    if not encrypted and secret is not None:
        raise KeyFileError(target, "is not encrypted, but a passphrase was given")
    try:
        return target, serialization.load_pem_private_key(data, password=secret)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The foreign message is dropped on purpose: the text must never carry key details.
        problem = "wrong passphrase, or the file is damaged" if encrypted else "is not a PEM key"
        raise KeyFileError(target, problem) from None


def load_signing_key(
    path: str | os.PathLike[str], *, passphrase: bytes | str | None = None
) -> SigningKey:
    """Load a signing key written by :func:`save_key` (or any PKCS#8/PKCS#1/SEC1 PEM key).

    Raises:
        KeyFileError: unreadable, accessible by group or others, encrypted without a
            passphrase (or the reverse), wrong passphrase, or not a supported signing key.
    """
    target, key = _load_private(path, passphrase)
    if not isinstance(
        key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)
    ):
        raise KeyFileError(target, "does not hold a signing key")
    try:
        return SigningKey(key)
    except InvalidValue as exc:
        raise KeyFileError(target, str(exc)) from None


def load_agreement_key(
    path: str | os.PathLike[str], *, passphrase: bytes | str | None = None
) -> AgreementKey:
    """Load an X25519 key written by :func:`save_key`.

    Raises:
        KeyFileError: as :func:`load_signing_key`, or the file holds another key type.
    """
    target, key = _load_private(path, passphrase)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise KeyFileError(target, "does not hold an X25519 key agreement key")
    return AgreementKey(key)
