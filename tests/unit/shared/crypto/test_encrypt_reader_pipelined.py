"""The pipelined encrypt_reader (hashing and writing in helper threads) writes exactly
what encrypt_stream writes, at every block and chunk boundary, for every binding."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from typing import Any
from unittest import mock

import pytest

from shared import crypto
from shared.crypto import CHUNK_SIZE, IntegrityError
from shared.secrets import InMemoryVault

KEY_NAME = "test-key"
BLOCK = 1024 * 1024  # encrypt_reader's block for the default chunk size
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, BLOCK - 1, BLOCK, BLOCK + 1,
         2 * BLOCK, 3 * BLOCK + CHUNK_SIZE + 7, 11 * BLOCK + 5]  # fmt: skip


def _name_of(digest: bytes) -> bytes:
    return hashlib.sha256(b"naming-key" + digest).digest()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("binding", ["name", "sha256", "hash-only", "none"])
def test_same_bytes_as_encrypt_stream(size: int, binding: str) -> None:
    vault = InMemoryVault()
    data = os.urandom(size)
    dk = vault.generate_data_key(KEY_NAME)
    options = {
        "name": {"name_of": _name_of},
        "sha256": {"bind_sha256": True},
        "hash-only": {"hash_sha256": True},
        "none": {},
    }[binding]
    prefix = os.urandom(crypto.NONCE_PREFIX_SIZE)
    outputs, results = [], []
    # the same nonce prefix for both, so the ciphertexts must be identical
    with mock.patch.object(crypto.os, "urandom", return_value=prefix):
        for encrypt in (
            lambda out: crypto.encrypt_stream(
                [data[i : i + 100_003] for i in range(0, size, 100_003)], out,
                data_key=dk.plaintext, wrapped_key=dk.wrapped, key_name=KEY_NAME, **options,
            ),
            lambda out: crypto.encrypt_reader(
                io.BytesIO(data), out,
                data_key=dk.plaintext, wrapped_key=dk.wrapped, key_name=KEY_NAME, **options,
            ),
        ):  # fmt: skip
            out = io.BytesIO()
            results.append(encrypt(out))
            outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    assert results[0] == results[1] and results[1].size == size
    if binding != "none":
        assert results[1].sha256 == hashlib.sha256(data).hexdigest()
    expected = results[1].name or (results[1].sha256 if binding == "sha256" else None)
    plain = b"".join(
        crypto.decrypt_buffer(outputs[1], vault.decrypt_data_key, expected_digest=expected)
    )
    assert plain == data


def test_a_failing_write_fails_the_encryption_and_leaves_no_thread() -> None:
    vault = InMemoryVault()
    dk = vault.generate_data_key(KEY_NAME)

    class Full(io.BytesIO):
        def write(self, b: object) -> int:  # type: ignore[override]
            if self.tell() > BLOCK:
                raise OSError(28, "No space left on device")
            return super().write(b)  # type: ignore[arg-type]

    before = threading.active_count()
    with pytest.raises(OSError, match="No space"):
        crypto.encrypt_reader(
            io.BytesIO(os.urandom(4 * BLOCK)), Full(),
            data_key=dk.plaintext, wrapped_key=dk.wrapped, key_name=KEY_NAME, name_of=_name_of,
        )  # fmt: skip
    assert threading.active_count() == before


def test_a_truncated_pipelined_stream_is_refused() -> None:
    vault = InMemoryVault()
    dk = vault.generate_data_key(KEY_NAME)
    data = os.urandom(2 * BLOCK + 5)
    out = io.BytesIO()
    result = crypto.encrypt_reader(
        io.BytesIO(data), out,
        data_key=dk.plaintext, wrapped_key=dk.wrapped, key_name=KEY_NAME, name_of=_name_of,
    )  # fmt: skip
    cut = out.getvalue()[: -(5 + crypto.TAG_SIZE)]
    with pytest.raises(IntegrityError):
        b"".join(crypto.decrypt_buffer(cut, vault.decrypt_data_key, expected_digest=result.name))


_SHA256 = hashlib.sha256  # crypto.hashlib is this module: patched below


class _LaggingSha256:
    """sha256 whose updates lag behind (a busy core): what the reader has queued for it
    must still be the bytes it read when the hash gets to them."""

    def __init__(self) -> None:
        self._inner = _SHA256()

    def update(self, data: Any) -> None:
        time.sleep(0.003)
        self._inner.update(data)

    def digest(self) -> bytes:
        return self._inner.digest()


def test_a_lagging_hash_still_hashes_what_was_read() -> None:
    """More blocks than input buffers with a hash thread that falls behind: a buffer is
    read into again only after its hash, so the digest is the file's."""
    vault = InMemoryVault()
    dk = vault.generate_data_key(KEY_NAME)
    data = os.urandom(3 * crypto._HASH_AHEAD * BLOCK + 17)
    out = io.BytesIO()
    with mock.patch.object(crypto.hashlib, "sha256", _LaggingSha256):
        result = crypto.encrypt_reader(
            io.BytesIO(data), out,
            data_key=dk.plaintext, wrapped_key=dk.wrapped, key_name=KEY_NAME, hash_sha256=True,
        )  # fmt: skip
    assert result.sha256 == _SHA256(data).hexdigest()
    assert b"".join(crypto.decrypt_buffer(out.getvalue(), vault.decrypt_data_key)) == data
