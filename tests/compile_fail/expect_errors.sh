#!/bin/sh
# expect_errors.sh COMPILER INCLUDE_DIR FILE PATTERN...: FILE must fail to compile, and the
# compiler's output must contain every PATTERN (grep -E, each anywhere in the output).
compiler=$1 include=$2 file=$3
shift 3
if out=$("$compiler" -std=c++20 -fsyntax-only -DMSGPACK_NO_BOOST -I"$include" "$file" 2>&1); then
  echo "$file compiled, but must not"
  exit 1
fi
for pattern in "$@"; do
  if ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
    printf '%s\n' "$out"
    echo "the errors do not say: $pattern"
    exit 1
  fi
done
echo "fails as expected ($(printf '%s\n' "$out" | wc -l) lines of errors)"
