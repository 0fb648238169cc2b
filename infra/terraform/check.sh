#!/usr/bin/env bash
# Offline checks of the Terraform module (no provider download, no cloud call):
#   1. terraform fmt -check -recursive infra/terraform
#   2. pytest tests/infra (static checks on the parsed HCL, python-hcl2)
#   3. checkov on infra/terraform, with every network feature off, after a
#      self-test proving it still fails on a known-bad resource.
#
# Usage: infra/terraform/check.sh            (from anywhere)
# Environment:
#   PYTHON         python with pytest and python-hcl2  (default: .venv/bin/python, else python3)
#   CHECKOV        checkov executable to use            (default: see CHECKOV_VENV)
#   CHECKOV_VENV   venv holding checkov, created from PyPI on first use
#                  (default: ~/.cache/dicom-series-worker/checkov-<version>).
#                  checkov pins packaging<24, which pytest 9 refuses, hence
#                  its own venv rather than the project's.
#   SKIP_CHECKOV=1 run steps 1 and 2 only.
set -euo pipefail

CHECKOV_VERSION="3.3.30"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# An empty CLI config: no ~/.terraformrc warning, no credentials, no plugin cache.
: > "$TMP/terraformrc"
export TF_CLI_CONFIG_FILE="$TMP/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

step() { printf '\n== %s\n' "$*"; }

step "terraform fmt -check -recursive infra/terraform"
terraform fmt -check -recursive -diff infra/terraform
echo "formatted"

step "pytest tests/infra"
"$PYTHON" -m pytest tests/infra -q -p no:cacheprovider

if [[ "${SKIP_CHECKOV:-0}" == "1" ]]; then
  echo "SKIP_CHECKOV=1: checkov not run"
  exit 0
fi

step "checkov ${CHECKOV_VERSION} (offline)"
if [[ -z "${CHECKOV:-}" ]]; then
  CHECKOV_VENV="${CHECKOV_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dicom-series-worker/checkov-${CHECKOV_VERSION}}"
  CHECKOV="$CHECKOV_VENV/bin/checkov"
  if [[ ! -x "$CHECKOV" ]]; then
    echo "installing checkov==${CHECKOV_VERSION} into $CHECKOV_VENV (PyPI, one time)"
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==${CHECKOV_VERSION}"
  fi
fi

# No Prisma Cloud API key or URL: checkov then never calls the platform.
# --skip-download: no external policies or guidelines; BC_SKIP_MAPPING: no
# check-id mapping download. Together they make the run fully offline.
run_checkov() {
  env -u BC_API_KEY -u PRISMA_API_URL -u BC_REPO_ID \
    BC_SKIP_MAPPING=TRUE CKV_IGNORE_HIDDEN_DIRECTORIES=true LOG_LEVEL=WARNING \
    "$CHECKOV" --framework terraform --quiet --compact --skip-download "$@"
}

# Self-test: a public-prone bucket must make checkov exit 1; otherwise a
# broken install or option would silently pass everything.
mkdir -p "$TMP/canary"
cat > "$TMP/canary/main.tf" <<'EOF'
resource "google_storage_bucket" "canary" {
  name     = "checkov-canary"
  location = "EU"
}
EOF
set +e
run_checkov -d "$TMP/canary" > "$TMP/canary.log" 2>&1
canary_rc=$?
set -e
if [[ $canary_rc -ne 1 ]] || ! grep -q "CKV_GCP_29" "$TMP/canary.log"; then
  cat "$TMP/canary.log"
  echo "checkov self-test failed: expected findings and exit 1 on the canary, got exit $canary_rc" >&2
  exit 2
fi
echo "self-test: checkov reports a known-bad bucket (exit 1)"

run_checkov -d infra/terraform
echo "checkov: no finding"
