# Sourced by the scripts that install a Python tool: pinned_venv DIR PACKAGE==VERSION makes
# (or reuses) a venv in DIR holding exactly that package, and prints its bin dir.
pinned_venv() {
    local dir=$1 want=$2
    if [[ ! -f $dir/.installed ]] || [[ $(cat "$dir/.installed") != "$want" ]]; then
        echo "installing $want into $dir" >&2
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install -q --disable-pip-version-check "$want" >&2
        echo "$want" >"$dir/.installed"
    fi
    echo "$dir/bin"
}
