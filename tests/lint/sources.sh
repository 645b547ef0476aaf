# shellcheck shell=bash
# sources.sh: sourced by the lint scripts. list_sources ROOT prints, one per line and sorted, every
# .c and .h file under ROOT's C directories, skipping build trees, node_modules and .git. It walks
# the directory rather than asking git, so it works the same in a fresh clone, a tarball and a
# tree with files not yet added.

lint_dirs="shared routerd authd ctl tests"

list_sources() {
    local root=$1 d
    local dirs=()

    for d in $lint_dirs; do
        [ -d "$root/$d" ] && dirs+=("$root/$d")
    done
    [ ${#dirs[@]} -gt 0 ] || return 0
    find "${dirs[@]}" \
        \( -name node_modules -o -name .git -o -name 'build*' -o -name CMakeFiles \) -prune -o \
        -type f \( -name '*.c' -o -name '*.h' \) -print | LC_ALL=C sort
}
