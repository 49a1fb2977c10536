"""User secrets: values to the secret store only; names come back."""

from __future__ import annotations

from tests.unit.gateway.conftest import Harness


async def test_put_list_delete(harness: Harness) -> None:
    user_id, headers = harness.login()
    _, other = harness.login()
    c = harness.client
    r = await c.put(
        "/api/secrets/HF_TOKEN", json={"value": "hf_supersecretvalue123"}, headers=headers
    )
    assert r.status_code == 204 and r.content == b""
    stored = harness.vault.get_user_secret(str(user_id), "HF_TOKEN")
    assert stored is not None and stored.reveal() == "hf_supersecretvalue123"
    listed = await c.get("/api/secrets", headers=headers)
    assert listed.json() == {"names": ["HF_TOKEN"]} and "supersecret" not in listed.text
    assert (await c.get("/api/secrets", headers=other)).json() == {"names": []}
    assert (await c.delete("/api/secrets/HF_TOKEN", headers=other)).status_code == 404
    assert (await c.delete("/api/secrets/HF_TOKEN", headers=headers)).status_code == 204
    assert (await c.delete("/api/secrets/HF_TOKEN", headers=headers)).status_code == 404


async def test_bad_names_and_bodies(harness: Harness) -> None:
    _, headers = harness.login()
    c = harness.client
    assert (
        await c.put("/api/secrets/bad name!", json={"value": "x"}, headers=headers)
    ).status_code == 422
    r = await c.put("/api/secrets/OK", json={"value": "x", "extra": 1}, headers=headers)
    assert r.status_code == 422 and "extra" in r.json()["error"]["message"]
    assert (await c.put("/api/secrets/OK", json={"value": ""}, headers=headers)).status_code == 422
    assert (await c.put("/api/secrets/OK", json={"value": "x"})).status_code == 401


async def test_store_failure_is_503_without_the_value(harness: Harness) -> None:
    _, headers = harness.login()

    def broken(*_args: object) -> None:
        raise ConnectionError("vault down: hf_secretvalue")

    harness.vault.put_user_secret = broken  # type: ignore[method-assign,assignment]
    r = await harness.client.put(
        "/api/secrets/A", json={"value": "hf_secretvalue"}, headers=headers
    )
    assert r.status_code == 503 and "hf_secretvalue" not in r.text
