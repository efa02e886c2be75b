# Sourced by scripts/test_python.sh and scripts/check_wheel.sh: the CPython versions fastlog
# supports (pyproject.toml: requires-python >= 3.11) and where to find them on this machine.
SUPPORTED_PYTHONS=(3.11 3.12 3.13)

find_python() {   # find_python 3.13 -> an interpreter of that version (pyenv's or on PATH), or nothing
    local v=$1 root p
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for p in "$root"/versions/"$v".*/bin/python "$(command -v "python$v" 2>/dev/null || true)"; do
        if [ -x "$p" ] && "$p" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))"; then
            echo "$p"
            return
        fi
    done
}
