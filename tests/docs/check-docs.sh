#!/usr/bin/env bash
# check-docs.sh ROUTERD SOURCE_DIR: the docs describe what the binary does. Every key that
# --dump-config prints is documented in docs/configuration.md, and every long option that --help
# lists appears in the README.
set -u
routerd=$1
src=$2
fail=0

keys=$("$routerd" --config /dev/null --dump-config | sed -n 's/^#\{0,1\}\([a-z_]*\) = .*/\1/p')
[ -n "$keys" ] || { echo "no keys from --dump-config"; exit 1; }
for k in $keys; do
    grep -q "| \`$k\` |" "$src/docs/configuration.md" || { echo "docs/configuration.md lacks key '$k'"; fail=1; }
done

opts=$("$routerd" --help | grep -o -- '--[a-z][a-z-]*' | sort -u)
for o in $opts; do
    grep -q -- "$o" "$src/README.md" || { echo "README.md lacks option '$o'"; fail=1; }
done

[ $fail -eq 0 ] && echo "docs cover $(echo "$keys" | wc -w) keys and $(echo "$opts" | wc -w) options"
exit $fail
