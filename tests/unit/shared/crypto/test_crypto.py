"""Chunked AES-256-GCM: round trips and every kind of tampering detected."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import crypto
from shared.crypto import CHUNK_SIZE, TAG_SIZE, IntegrityError, KeyUnwrapError
from shared.secrets import InMemoryVault

KEY_NAME = "test-key"


def _encrypt(
    vault: InMemoryVault, data: bytes, *, chunk_size: int = CHUNK_SIZE, pieces: int = 1
) -> bytes:
    dk = vault.generate_data_key(KEY_NAME)
    step = max(1, len(data) // pieces)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    out = io.BytesIO()
    result = crypto.encrypt_stream(
        chunks,
        out,
        data_key=dk.plaintext,
        wrapped_key=dk.wrapped,
        key_name=KEY_NAME,
        chunk_size=chunk_size,
        hash_sha256=True,
    )
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    return out.getvalue()


Decrypt = Callable[..., Iterator[bytes]]


def _from_stream(blob: bytes, unwrap: crypto.Unwrap, **kw: str) -> Iterator[bytes]:
    return crypto.decrypt_stream(io.BytesIO(blob), unwrap, **kw)


@pytest.fixture(params=["stream", "buffer"])
def decrypt(request: pytest.FixtureRequest) -> Decrypt:
    """Both readers: from a file-like object, and straight from a buffer (mmap)."""
    return _from_stream if request.param == "stream" else crypto.decrypt_buffer


def _decrypt_all(vault: InMemoryVault, blob: bytes, **kw: str) -> bytes:
    return b"".join(crypto.decrypt_stream(io.BytesIO(blob), vault.decrypt_data_key, **kw))


def _released_before_error(decrypt: Decrypt, vault: InMemoryVault, blob: bytes) -> list[bytes]:
    """Plaintext chunks yielded before decryption raised IntegrityError."""
    released: list[bytes] = []
    with pytest.raises(IntegrityError):
        for chunk in decrypt(blob, vault.decrypt_data_key):
            released.append(chunk)
    return released


SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 17, 4 * CHUNK_SIZE]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_sizes(decrypt: Decrypt, vault: InMemoryVault, size: int) -> None:
    data = os.urandom(size)
    blob = _encrypt(vault, data, pieces=3)
    assert b"".join(decrypt(blob, vault.decrypt_data_key)) == data
    header = crypto.read_header(io.BytesIO(blob))
    assert crypto.plaintext_size(len(blob), header) == size
    chunks = max(1, -(-size // CHUNK_SIZE))
    assert len(blob) == len(header.raw) + size + chunks * TAG_SIZE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=600),
    chunk_size=st.integers(min_value=1, max_value=64),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
)
def test_round_trip_property(data: bytes, chunk_size: int, cuts: list[int]) -> None:
    """Any content, any chunk size, any split of the input into pieces."""
    vault = InMemoryVault()
    dk = vault.generate_data_key(KEY_NAME)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    out = io.BytesIO()
    crypto.encrypt_stream(
        pieces,
        out,
        data_key=dk.plaintext,
        wrapped_key=dk.wrapped,
        key_name=KEY_NAME,
        chunk_size=chunk_size,
    )
    blob = out.getvalue()
    chunks = list(crypto.decrypt_stream(io.BytesIO(blob), vault.decrypt_data_key))
    assert b"".join(chunks) == data
    assert list(crypto.decrypt_buffer(blob, vault.decrypt_data_key)) == chunks
    assert all(len(c) == chunk_size for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk_size or data == b""
    header = crypto.read_header(io.BytesIO(blob))
    assert crypto.plaintext_size(len(blob), header) == len(data)


def test_reused_input_buffer_is_safe(vault: InMemoryVault) -> None:
    """A producer that refills one bytearray (like readinto) must not corrupt held chunks."""
    data = os.urandom(3 * 64 + 10)
    buf = bytearray(64)

    def producer():
        for i in range(0, len(data), 64):
            piece = data[i : i + 64]
            buf[: len(piece)] = piece
            yield memoryview(buf)[: len(piece)]

    dk = vault.generate_data_key(KEY_NAME)
    out = io.BytesIO()
    crypto.encrypt_stream(
        producer(),
        out,
        data_key=dk.plaintext,
        wrapped_key=dk.wrapped,
        key_name=KEY_NAME,
        chunk_size=64,
    )
    assert _decrypt_all(vault, out.getvalue()) == data


def test_file_round_trip_and_atomic(tmp_path: Path, vault: InMemoryVault) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 5)
    src, enc, dec = tmp_path / "src", tmp_path / "enc", tmp_path / "dec"
    src.write_bytes(data)
    dk = vault.generate_data_key(KEY_NAME)
    result = crypto.encrypt_file(
        src, enc, data_key=dk.plaintext, wrapped_key=dk.wrapped, key_name=KEY_NAME
    )
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert data[:64] not in enc.read_bytes()
    assert crypto.decrypt_file(enc, dec, vault.decrypt_data_key) == len(data)
    assert dec.read_bytes() == data
    # A corrupt source leaves no destination file and no temp file behind.
    raw = bytearray(enc.read_bytes())
    raw[-1] ^= 1
    enc.write_bytes(raw)
    with pytest.raises(IntegrityError):
        crypto.decrypt_file(enc, tmp_path / "never", vault.decrypt_data_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dec", "enc", "src"]


def test_header_fields(vault: InMemoryVault) -> None:
    blob = _encrypt(vault, b"hello")
    header = crypto.read_header(io.BytesIO(blob))
    assert blob.startswith(crypto.MAGIC)
    assert header.version == crypto.FORMAT_VERSION
    assert header.chunk_size == CHUNK_SIZE
    assert header.key_name == KEY_NAME
    assert header.wrapped_key.startswith("fake:v1:")
    assert len(header.nonce_prefix) == 7
    other = crypto.read_header(io.BytesIO(_encrypt(vault, b"hello")))
    assert other.nonce_prefix != header.nonce_prefix


# -- tampering -------------------------------------------------------------------------

CS = 32  # small chunks make chunk surgery easy
DATA = bytes(range(256)) * 2  # 512 bytes = 16 chunks of 32


def _split(blob: bytes) -> tuple[bytes, list[bytes]]:
    header = crypto.read_header(io.BytesIO(blob))
    body = blob[len(header.raw) :]
    seg = header.chunk_size + TAG_SIZE
    return header.raw, [body[i : i + seg] for i in range(0, len(body), seg)]


@pytest.fixture
def sealed(vault: InMemoryVault) -> bytes:
    return _encrypt(vault, DATA, chunk_size=CS, pieces=5)


def _assert_only_verified_released(released: list[bytes], upto: int) -> None:
    """Exactly the chunks before ``upto`` were released, each genuine."""
    assert released == [DATA[i * CS : (i + 1) * CS] for i in range(upto)]


def test_truncation_at_chunk_boundary(
    decrypt: Decrypt, vault: InMemoryVault, sealed: bytes
) -> None:
    header, chunks = _split(sealed)
    released = _released_before_error(decrypt, vault, header + b"".join(chunks[:10]))
    _assert_only_verified_released(released, 9)  # chunk 9 lacks the last-chunk flag


def test_truncation_mid_chunk_and_in_header(
    decrypt: Decrypt, vault: InMemoryVault, sealed: bytes
) -> None:
    _released_before_error(decrypt, vault, sealed[:-5])
    header, _ = _split(sealed)
    for cut in (0, 3, 10, len(header) - 1, len(header)):
        assert _released_before_error(decrypt, vault, sealed[:cut]) == []


def test_dropped_chunk(decrypt: Decrypt, vault: InMemoryVault, sealed: bytes) -> None:
    header, chunks = _split(sealed)
    released = _released_before_error(decrypt, vault, header + b"".join(chunks[:4] + chunks[5:]))
    _assert_only_verified_released(released, 4)


def test_swapped_chunks(decrypt: Decrypt, vault: InMemoryVault, sealed: bytes) -> None:
    header, chunks = _split(sealed)
    chunks[6], chunks[7] = chunks[7], chunks[6]
    _assert_only_verified_released(
        _released_before_error(decrypt, vault, header + b"".join(chunks)), 6
    )


def test_appended_data(decrypt: Decrypt, vault: InMemoryVault, sealed: bytes) -> None:
    header, chunks = _split(sealed)
    released = _released_before_error(decrypt, vault, sealed + chunks[3])
    _assert_only_verified_released(released, 15)  # the real final chunk is no longer last


def test_chunk_from_another_stream(decrypt: Decrypt, vault: InMemoryVault, sealed: bytes) -> None:
    header, chunks = _split(sealed)
    _, other = _split(_encrypt(vault, DATA, chunk_size=CS))
    chunks[2] = other[2]
    _assert_only_verified_released(
        _released_before_error(decrypt, vault, header + b"".join(chunks)), 2
    )


@pytest.mark.parametrize("where", ["body", "tag", "last_tag"])
def test_flipped_bit_in_body_or_tag(
    decrypt: Decrypt, vault: InMemoryVault, sealed: bytes, where: str
) -> None:
    header, chunks = _split(sealed)
    index = {"body": 3, "tag": 5, "last_tag": len(chunks) - 1}[where]
    chunk = bytearray(chunks[index])
    chunk[0 if where == "body" else -1] ^= 0x10
    chunks[index] = bytes(chunk)
    released = _released_before_error(decrypt, vault, header + b"".join(chunks))
    _assert_only_verified_released(released, index)


def test_flipped_bit_anywhere_in_header(
    decrypt: Decrypt, vault: InMemoryVault, sealed: bytes
) -> None:
    header, _ = _split(sealed)
    for pos in range(len(header)):
        for bit in (0, 7):
            tampered = bytearray(sealed)
            tampered[pos] ^= 1 << bit
            assert _released_before_error(decrypt, vault, bytes(tampered)) == [], (pos, bit)


def test_changed_chunk_size_in_header(
    decrypt: Decrypt, vault: InMemoryVault, sealed: bytes
) -> None:
    tampered = bytearray(sealed)
    tampered[6:10] = struct.pack(">I", CS * 2)
    assert _released_before_error(decrypt, vault, bytes(tampered)) == []


def test_wrong_data_key(vault: InMemoryVault, sealed: bytes) -> None:
    def wrong(_name: str, _wrapped: str) -> bytes:
        return os.urandom(32)

    with pytest.raises(IntegrityError) as info:
        list(crypto.decrypt_stream(io.BytesIO(sealed), wrong))
    assert not isinstance(info.value, KeyUnwrapError)


def test_unwrap_failure_is_key_unwrap_error(sealed: bytes) -> None:
    other_vault = InMemoryVault()  # knows no such key
    with pytest.raises(KeyUnwrapError):
        list(crypto.decrypt_stream(io.BytesIO(sealed), other_vault.decrypt_data_key))


def test_bound_digest(vault: InMemoryVault) -> None:
    dk = vault.generate_data_key(KEY_NAME)
    out = io.BytesIO()
    result = crypto.encrypt_stream(
        [DATA],
        out,
        data_key=dk.plaintext,
        wrapped_key=dk.wrapped,
        key_name=KEY_NAME,
        chunk_size=CS,
        bind_sha256=True,
    )
    blob = out.getvalue()
    assert result.sha256 == hashlib.sha256(DATA).hexdigest()
    assert _decrypt_all(vault, blob, expected_sha256=result.sha256) == DATA
    released = []
    with pytest.raises(IntegrityError):
        for chunk in crypto.decrypt_stream(
            io.BytesIO(blob), vault.decrypt_data_key, expected_sha256="00" * 32
        ):
            released.append(chunk)
    assert b"".join(released) == DATA[: len(DATA) - CS]  # the final chunk is withheld
    with pytest.raises(IntegrityError):
        _decrypt_all(vault, blob)  # a bound stream needs its digest
    with pytest.raises(IntegrityError):
        _decrypt_all(vault, _encrypt(vault, DATA), expected_sha256=result.sha256)


def test_bound_keyed_name(vault: InMemoryVault) -> None:
    """FLAG_BINDS_NAME: the final chunk binds the keyed name, not the bare sha256."""
    dk = vault.generate_data_key(KEY_NAME)
    out = io.BytesIO()
    key = b"k" * 32
    result = crypto.encrypt_stream(
        [DATA],
        out,
        data_key=dk.plaintext,
        wrapped_key=dk.wrapped,
        key_name=KEY_NAME,
        chunk_size=CS,
        name_of=lambda sha: hmac.new(key, sha, hashlib.sha256).digest(),
    )
    blob = out.getvalue()
    sha = hashlib.sha256(DATA).hexdigest()
    assert result.sha256 == sha
    assert result.name == hmac.new(key, bytes.fromhex(sha), hashlib.sha256).hexdigest()
    assert crypto.read_header(io.BytesIO(blob)).flags == crypto.FLAG_BINDS_NAME
    opened = crypto.decrypt_stream(
        io.BytesIO(blob), vault.decrypt_data_key, expected_digest=result.name
    )
    assert b"".join(opened) == DATA
    with pytest.raises(IntegrityError):  # the plaintext's sha256 does not open it
        b"".join(
            crypto.decrypt_stream(io.BytesIO(blob), vault.decrypt_data_key, expected_digest=sha)
        )
    with pytest.raises(IntegrityError):
        _decrypt_all(vault, blob)  # a bound stream needs its name
    with pytest.raises(ValueError):
        crypto.encrypt_stream(
            [DATA],
            io.BytesIO(),
            data_key=dk.plaintext,
            wrapped_key=dk.wrapped,
            key_name=KEY_NAME,
            bind_sha256=True,
            name_of=lambda sha: sha,
        )


def test_both_binding_flags_are_refused(vault: InMemoryVault) -> None:
    blob = bytearray(_encrypt(vault, DATA))
    blob[5] = crypto.FLAG_BINDS_SHA256 | crypto.FLAG_BINDS_NAME  # the flags byte
    with pytest.raises(IntegrityError, match="flags"):
        crypto.read_header(io.BytesIO(bytes(blob)))
