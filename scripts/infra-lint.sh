#!/usr/bin/env bash
# Lints the deployment template offline: cfn-lint (CloudFormation schemas and rules, the SAM
# transform included) and checkov (security policies). Each is installed from PyPI, pinned,
# into its own venv under target/ the first time (checkov's dependencies clash with
# cfn-lint's). Skips are declared in infra/template.yaml next to what they excuse, each
# with its reason: checkov in a resource's Metadata.checkov.skip, cfn-lint in
# Metadata.cfn-lint.config.ignore_checks with a comment.
#
#   scripts/infra-lint.sh            # both; exit 1 on any finding
#   scripts/infra-lint.sh cfn-lint   # one of them
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
VENVS=${IMGPIPE_INFRA_VENVS:-$root/target/infra-lint}
TEMPLATE=infra/template.yaml
say() { echo "infra-lint.sh: $*" >&2; }

# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh
venv() { pinned_venv "$VENVS/$1" "$2"; }

run_cfn_lint() {
    local bin
    bin=$(venv cfn-lint "cfn-lint==$CFN_LINT_VERSION")
    say "cfn-lint $("$bin/cfn-lint" --version | awk '{print $2}') on $TEMPLATE"
    "$bin/cfn-lint" --non-zero-exit-code informational -- "$TEMPLATE"
}

run_checkov() {
    local bin
    bin=$(venv checkov "checkov==$CHECKOV_VERSION")
    say "checkov $("$bin/checkov" --version) on $TEMPLATE"
    # Offline: no platform calls, no version check, no guidelines download.
    BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false "$bin/checkov" --quiet --compact \
        --skip-download --framework cloudformation --file "$TEMPLATE"
}

case ${1:-all} in
    cfn-lint) run_cfn_lint ;;
    checkov) run_checkov ;;
    all) run_cfn_lint && run_checkov ;;
    *) say "usage: $0 [cfn-lint|checkov|all]"; exit 2 ;;
esac
say "clean"
