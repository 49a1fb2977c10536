"""Single sign-on in headless Chromium (issue 18 item 3): ``aidp up`` configured with a real
OpenID Connect provider (``oidc-provider-mock`` on 127.0.0.1, this platform registered as
its client, PKCE enforced); the login page's "Sign in with Example IdP" goes through the
provider's consent form and back into the app, signed in; an unverified email comes back
refused, with the reason. Screenshots land in ``tests/e2e/artifacts/web-sso/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli.harness import ROOT, running_platform
from tests.e2e.web.test_web_flow import _ensure_ui_built
from tests.support.infra import free_port
from tests.support.oidc_server import oidc_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts" / "web-sso"
LABEL = "Example IdP"


def test_sign_in_with_the_identity_provider_in_the_browser(tmp_path: Path) -> None:
    _ensure_ui_built()
    port = free_port()
    with oidc_server(require_client_registration=True) as idp:
        client_id, secret = idp.register_client([f"http://127.0.0.1:{port}/api/auth/oidc/callback"])
        idp.set_user("alice-sub", email="alice.sso@example.com", email_verified=True)
        idp.set_user("mallory-sub", email="mallory@example.com", email_verified=False)
        env = {
            "AIDP_OIDC_ISSUER": idp.url,
            "AIDP_OIDC_CLIENT_ID": client_id,
            "AIDP_OIDC_CLIENT_SECRET": secret,
            "AIDP_OIDC_ALLOW_INSECURE_ISSUER": "true",
            "AIDP_OIDC_NAME": LABEL,
        }
        with running_platform(tmp_path / "platform", extra_env=env, port=port) as platform:
            scenario = {
                "label": LABEL,
                "issuer": idp.url,
                "alice_sub": "alice-sub",
                "alice_email": "alice.sso@example.com",
                "unverified_sub": "mallory-sub",
            }
            if ARTIFACTS.exists():
                shutil.rmtree(ARTIFACTS)
            proc = subprocess.run(
                [
                    "node",
                    str(Path(__file__).with_name("sso.mjs")),
                    platform.url,
                    str(ARTIFACTS),
                    json.dumps(scenario),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            log_tail = platform.log_tail()
        checked = idp.pkce_checked
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    seen = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0, (
        f"{seen.get('error') or proc.stderr}\nsteps: {seen.get('steps')}\n"
        f"--- platform log ---\n{log_tail}"
    )
    assert seen["signed_in_email"] == "alice.sso@example.com"
    assert seen["hash_after"] in ("#/", "")  # the sso-complete marker is consumed
    assert seen["reload_kept_session"] is True
    assert "not verified" in seen["unverified_message"]
    assert seen["unverified_signed_in"] is False
    assert seen["unverified_hash"] in ("#/", "")
    assert checked >= 2  # both sign-ins went through PKCE at the provider
    assert not [e for e in seen["console_errors"] if "Failed to load resource" not in e], seen
    assert (ARTIFACTS / "01-sso-login.png").is_file()
    assert (ARTIFACTS / "03-signed-in.png").is_file()
    assert (ARTIFACTS / "04-unverified-refused.png").is_file()
