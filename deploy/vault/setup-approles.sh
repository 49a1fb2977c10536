#!/bin/sh
# aidp on an external OpenBao/Vault (distributed mode): least privilege, one AppRole per
# service, each with only its own policy (policies/aidp-<service>.hcl).
#
#   BAO_ADDR=https://vault.internal:8200 BAO_TOKEN=<admin token> \
#     deploy/vault/setup-approles.sh /etc/aidp
#
# Idempotent. It enables KV v2 at secret/, transit at transit/ and AppRole at approle/ if
# absent, creates the artifact key and each service's Ed25519 signing key aidp-svc-<service>,
# writes the five policies and AppRoles aidp-<service>, and for every service sets
# AIDP_VAULT_ROLE_ID / AIDP_VAULT_SECRET_ID in OUT_DIR/<service>.env (mode 0600; other lines
# of an existing file are kept; the systemd units read /etc/aidp/<service>.env). Each run
# issues NEW secret ids: restart the services after it.
#
# Environment: BAO_ADDR, BAO_TOKEN (or VAULT_ADDR / VAULT_TOKEN), BAO (the CLI: bao, or
# vault) [bao], AIDP_TRANSIT_KEY [aidp-artifacts; other names need policies rendered for
# them: python -m shared.secrets policies --transit-key NAME --out DIR, then
# AIDP_POLICY_DIR=DIR], AIDP_VAULT_TOKEN_TTL [1h], AIDP_VAULT_TOKEN_MAX_TTL [24h],
# AIDP_VAULT_SECRET_ID_TTL [0 = until rotated by running this again].
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-./vault-env}
BAO=${BAO:-bao}
policies=${AIDP_POLICY_DIR:-$here/policies}
key=${AIDP_TRANSIT_KEY:-aidp-artifacts}
token_ttl=${AIDP_VAULT_TOKEN_TTL:-1h}
token_max_ttl=${AIDP_VAULT_TOKEN_MAX_TTL:-24h}
secret_id_ttl=${AIDP_VAULT_SECRET_ID_TTL:-0}
services="auth gateway provisioner fetcher trainer"

if [ "$key" != aidp-artifacts ] && [ "$policies" = "$here/policies" ]; then
    echo "AIDP_TRANSIT_KEY=$key: render policies for it and set AIDP_POLICY_DIR" >&2
    exit 2
fi

mounts=$($BAO secrets list -format=json)
case $mounts in *'"secret/"'*) ;; *) $BAO secrets enable -path=secret -version=2 kv ;; esac
case $mounts in *'"transit/"'*) ;; *) $BAO secrets enable -path=transit transit ;; esac
if ! $BAO read "transit/keys/$key" >/dev/null 2>&1; then
    $BAO write -f "transit/keys/$key" type=aes256-gcm96 >/dev/null
fi
# each service's Ed25519 key for the service tokens of the internal APIs (shared.service_auth);
# its policy lets it sign with its own key only
for svc in $services; do
    if ! $BAO read "transit/keys/aidp-svc-$svc" >/dev/null 2>&1; then
        $BAO write -f "transit/keys/aidp-svc-$svc" type=ed25519 >/dev/null
    fi
done
case $($BAO auth list -format=json) in
    *'"approle/"'*) ;;
    *) $BAO auth enable -path=approle approle ;;
esac

umask 077
mkdir -p "$out"
for svc in $services; do
    name=aidp-$svc
    $BAO policy write "$name" "$policies/$name.hcl" >/dev/null
    $BAO write "auth/approle/role/$name" \
        token_policies="$name" token_ttl="$token_ttl" token_max_ttl="$token_max_ttl" \
        secret_id_ttl="$secret_id_ttl" token_type=service >/dev/null
    role_id=$($BAO read -field=role_id "auth/approle/role/$name/role-id")
    secret_id=$($BAO write -f -field=secret_id "auth/approle/role/$name/secret-id")
    env_file=$out/$svc.env
    tmp=$out/.$svc.env.tmp
    : >"$tmp"
    if [ -f "$env_file" ]; then
        grep -v -e '^AIDP_VAULT_ROLE_ID=' -e '^AIDP_VAULT_SECRET_ID=' -e '^AIDP_VAULT_TOKEN=' \
            "$env_file" >>"$tmp" || true
    fi
    printf 'AIDP_VAULT_ROLE_ID=%s\nAIDP_VAULT_SECRET_ID=%s\n' "$role_id" "$secret_id" >>"$tmp"
    chmod 600 "$tmp"
    mv "$tmp" "$env_file"
    echo "$name: policy and AppRole written; credentials in $env_file"
done
