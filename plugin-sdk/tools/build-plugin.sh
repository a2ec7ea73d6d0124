#!/usr/bin/env bash
# Builds a ctrflow plugin written in Python (componentize-py) or JavaScript (componentize-js)
# into a WebAssembly component, installing the pinned tool first if it is missing.
#
#   build-plugin.sh python|js <world> <plugin-dir> <out.wasm>
#       <world>: transform, enrich or sink (from wit/ctrflow.wit).
#       Python: <plugin-dir>/app.py defines `Transformer = export_transform(...)` (or
#       `Encoder = export_sink(...)`). JavaScript: <plugin-dir>/app.js exports `transformer`
#       (or `encoder`) and imports './ctrflow-plugin.js'.
#   build-plugin.sh install python|js
#       Only installs the tool, and prints its path.
#
# The tools go to ${CTRFLOW_CACHE_DIR:-~/.cache/ctrflow}/tools, outside the clone, one
# directory per pinned version; a lock keeps parallel builds from installing twice. They
# need python3 (with venv) and node/npm, and reach PyPI and npm once.
#
# The contract (wit/ctrflow.wit) and the guest library (ctrflow_plugin.py,
# ctrflow-plugin.js) are taken from the plugin directory when it has its own copy (a
# project made by `ctrflow plugin new`), else from this repository.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CTRFLOW_CACHE_DIR:-$HOME/.cache/ctrflow}/tools"

die() { echo "build-plugin.sh: $*" >&2; exit 1; }

# Installs the tool for $1 if needed; prints its path.
install_tool() {
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9
    case "$1" in
    python)
        local dir="$cache/componentize-py-$COMPONENTIZE_PY_VERSION"
        if [ ! -e "$dir/.installed" ]; then
            command -v python3 >/dev/null || die "python3 is needed to install componentize-py"
            rm -rf "$dir"
            echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $dir" >&2
            python3 -m venv "$dir" >&2
            "$dir/bin/pip" install --quiet --disable-pip-version-check \
                "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
            touch "$dir/.installed"
        fi
        echo "$dir/bin/componentize-py"
        ;;
    js)
        local dir="$cache/componentize-js-$COMPONENTIZE_JS_VERSION"
        if [ ! -e "$dir/.installed" ]; then
            command -v npm >/dev/null || die "node and npm are needed to install componentize-js"
            rm -rf "$dir"
            mkdir -p "$dir"
            echo "installing @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION into $dir" >&2
            npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
                "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2
            touch "$dir/.installed"
        fi
        echo "$dir/node_modules/.bin/componentize-js"
        ;;
    *) die "unknown language '$1' (python or js)" ;;
    esac
    flock -u 9
}

if [ "${1:-}" = install ]; then
    install_tool "${2:-}"
    exit 0
fi

[ $# -eq 4 ] || die "usage: build-plugin.sh python|js <world> <plugin-dir> <out.wasm>"
lang="$1" world="$2" src="$(cd "$3" && pwd)" out="$4"
case "$world" in transform | enrich | sink) ;; *) die "unknown world '$world' (transform, enrich or sink)" ;; esac
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

if [ -e "$src/wit/ctrflow.wit" ]; then wit="$src/wit"; else wit="$here/../../wit"; fi
[ -e "$wit/ctrflow.wit" ] || die "no wit/ctrflow.wit in $src or in this repository"
tool="$(install_tool "$lang")"

case "$lang" in
python)
    [ -e "$src/app.py" ] || die "$src/app.py is missing"
    # -p: module search path at build time; the plugin's own copy of the guest library, if
    # it has one, comes first.
    paths=(-p "$src")
    [ -d "$here/../python" ] && paths+=(-p "$here/../python")
    "$tool" -d "$wit" -w "$world" componentize app "${paths[@]}" -o "$out" >&2
    ;;
js)
    [ -e "$src/app.js" ] || die "$src/app.js is missing"
    # componentize-js reads the WIT and the modules relative to where it runs, so it builds
    # in a scratch directory holding the sources, the guest library and the contract.
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    [ -d "$here/../js" ] && cp "$here/../js/"*.js "$work/"
    cp "$src/"*.js "$work/"
    cp -r "$wit" "$work/wit"
    # No WASI features: stdio, clocks, random, HTTP and fetch are not the plugin's (the host
    # grants none of them anyway), and leaving them out keeps the component's imports small.
    (cd "$work" && "$tool" app.js --wit wit -n "$world" -o "$out" \
        -d stdio random clocks http fetch-event >&2)
    ;;
*) die "unknown language '$lang' (python or js)" ;;
esac
echo "$out"
