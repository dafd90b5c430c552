#!/usr/bin/env bash
# Lints the deployment files offline: cfn-lint (CloudFormation schemas and rules, the SAM
# transform included) and checkov (security policies) on infra/template.yaml, and
# kubernetes-validate (the API's own schemas, strict) and checkov on infra/k8s/. Each is
# installed from PyPI, pinned, into its own venv under target/ the first time (checkov's
# dependencies clash with cfn-lint's). Skips are declared next to what they excuse, each
# with its reason: checkov in a resource's Metadata.checkov.skip (a manifest's
# checkov.io/skip annotations), cfn-lint in Metadata.cfn-lint.config.ignore_checks with a
# comment. checkov drops resources whose Condition is false under the parameters' defaults,
# so the template is scanned three times: as it is (Step Functions, Lambda workers), with
# WorkerPlatform=ecs, and with Orchestrator=engine too (the engine's table, queue and service).
# The KEDA resources have no schema offline; lambda/tests/infra.rs checks them. The alert
# rules in infra/monitoring/ go through `promtool check rules` and their unit tests.
#
#   scripts/infra-lint.sh            # all; exit 1 on any finding
#   scripts/infra-lint.sh cfn-lint   # one of them
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
VENVS=${IMGPIPE_INFRA_VENVS:-$root/target/infra-lint}
TEMPLATE=infra/template.yaml
K8S=infra/k8s
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

checkov_offline() {
    # Offline: no platform calls, no version check, no guidelines download.
    BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false "$@" --quiet --compact --skip-download
}

# Copies template $1 to $2 with parameter $3's default $4 set to $5.
with_default() {
    awk -v param="  $3:" -v from="    Default: $4" -v to="    Default: $5" \
        '$0 == param { p = 1 } p && $0 == from { $0 = to; p = 0 } { print }' "$1" >"$2"
    grep -qx "    Default: $5" "$2" || { say "cannot set $3=$5 in a copy of $TEMPLATE"; exit 1; }
}

run_checkov() {
    local bin ecs engine
    bin=$(venv checkov "checkov==$CHECKOV_VERSION")
    say "checkov $("$bin/checkov" --version) on $TEMPLATE (WorkerPlatform=lambda, the default)"
    checkov_offline "$bin/checkov" --framework cloudformation --file "$TEMPLATE"
    ecs=$VENVS/template-ecs.yaml
    with_default "$TEMPLATE" "$ecs" WorkerPlatform lambda ecs
    say "checkov on $TEMPLATE with WorkerPlatform=ecs"
    checkov_offline "$bin/checkov" --framework cloudformation --file "$ecs"
    engine=$VENVS/template-engine.yaml
    with_default "$ecs" "$engine" Orchestrator stepfunctions engine
    say "checkov on $TEMPLATE with WorkerPlatform=ecs and Orchestrator=engine"
    checkov_offline "$bin/checkov" --framework cloudformation --file "$engine"
}

run_k8s() {
    local bin manifests=()
    bin=$(venv kubernetes-validate "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
    for f in "$K8S"/*.yaml; do
        [[ $(basename "$f") == kustomization.yaml ]] || manifests+=("$f")
    done
    say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION on $K8S"
    "$bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
    bin=$(venv checkov "checkov==$CHECKOV_VERSION")
    say "checkov on $K8S"
    checkov_offline "$bin/checkov" --framework kubernetes --directory "$K8S"
}

run_monitoring() {
    command -v promtool >/dev/null || scripts/build-deps.sh prometheus
    say "promtool on infra/monitoring (the alert rules and their tests)"
    (cd infra/monitoring && promtool check rules alerts.yml && promtool test rules alerts.test.yml)
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"], "no panels"' \
        infra/monitoring/grafana-dashboard.json
}

case ${1:-all} in
    cfn-lint) run_cfn_lint ;;
    checkov) run_checkov ;;
    k8s) run_k8s ;;
    monitoring) run_monitoring ;;
    # Not `a && b && c`: set -e ignores a failure left of &&, and "clean" would follow.
    all) run_cfn_lint; run_checkov; run_k8s; run_monitoring ;;
    *) say "usage: $0 [cfn-lint|checkov|k8s|monitoring|all]"; exit 2 ;;
esac
say "clean"
