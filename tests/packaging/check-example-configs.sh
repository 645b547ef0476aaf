#!/bin/sh
# check-example-configs.sh SOURCE_DIR AUTHD ROUTERD: packaging/authd.conf and routerd.conf must be
# exactly what gen-example-config.sh makes from the daemons' --dump-config (every key, its default
# and help line). On a difference, prints it and the command that regenerates the file.
set -eu
src=$1
status=0
for pair in "authd:$2" "routerd:$3"; do
    name=${pair%%:*}
    bin=${pair#*:}
    expected=$(mktemp)
    "$src/packaging/gen-example-config.sh" "$name" "$bin" >"$expected"
    if ! diff -u "$src/packaging/$name.conf" "$expected"; then
        echo "packaging/$name.conf is out of date; regenerate it with:" >&2
        echo "  packaging/gen-example-config.sh $name $bin > packaging/$name.conf" >&2
        status=1
    fi
    # Every key of the table appears, commented out, with its default.
    keys=$(env -i "$bin" --config /dev/null --dump-config | sed -n 's/^#\{0,1\}\([a-z_0-9]*\) =.*/\1/p')
    for k in $keys; do
        grep -q "^#$k =" "$src/packaging/$name.conf" || { echo "$name.conf lacks $k" >&2; status=1; }
    done
    rm -f "$expected"
done
exit $status
