#!/usr/bin/env bash
# test-summary.sh LOG: adds up cargo's "test result:" lines of LOG and the
# C tests' closing "c-tests: N passed, N failed" line, and prints one closing
# line "summary: N passed, N failed". Exits non-zero when anything failed or
# no test ran at all.
set -euo pipefail
log=$1
read -r passed failed < <(awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed;?$/) p += $i
            if ($(i+1) ~ /^failed;?$/) f += $i
        }
    }
    /^c-tests: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
    END { print p + 0, f + 0 }' "$log")
echo
echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
