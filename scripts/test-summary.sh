#!/usr/bin/env bash
# test-summary.sh LOG: the closing account of `make test`, read from its log.
#
# LOG holds the output of `cargo test --all-targets --no-fail-fast`, then of
# `make c-tests`, then of `make bench-smoke`, then of `make bench-scale-smoke`,
# then of `make deb-test`. Each part must have ended with its closing line:
#   - every cargo target, announced by "Running PATH (BINARY)", its own
#     "test result: ..." line (a target killed by a signal or crashed has none;
#     cargo names the cause in "process didn't exit successfully: ... (...)");
#   - the SCTP suite (tests/sctp/main.rs) is one of those targets;
#   - the C tests: "c-tests: N passed, N failed";
#   - the benchmark smoke: "bench: N runs in S s, M failed", with M = 0 and
#     every run of its "[i/N]" progress done;
#   - the scale benchmark's smoke (in UML): "scale: N passed, N failed";
#   - the Debian package test (make deb-test): "deb: N passed, N failed".
# Whatever is missing, or a target that cargo reports as failed although its
# result line shows no failure, is named on a "MISSING:" or "FAILED:" line and
# counted as one failed test, so a crash can never add up to "0 failed".
#
# Prints one line per group (socks5d's cargo targets, its SCTP suite, its C
# tests, the tools' targets under benches/ and examples/, the benchmark smoke
# runs, the scale smoke's checks), then exactly "summary: N passed, N failed"
# over all of them. Exits 1 when anything failed or is missing, or when
# nothing passed.
set -euo pipefail
[[ $# -eq 1 && -r $1 ]] || { echo "usage: $0 LOG (a readable file)" >&2; exit 2; }

awk '
BEGIN { label["cargo"] = "socks5d"; label["sctp"] = "socks5d"; label["tools"] = "a tool" }
function problem(kind, text) { problems[++np] = kind ": " text }

# The target being read ends: it needs its result line.
function close_target(   why) {
    if (cur == "") return
    if (!has_result[cur]) {
        why = cause[cur] != "" ? cause[cur] : "the log ends without one"
        problem("MISSING", "cargo target " cur " (" label[group[cur]] "): no \"test result\" line (" why ")")
        failed[group[cur]]++
    } else if (cargo_failed[cur] && failed_in[cur] == 0) {
        why = cause[cur] != "" ? cause[cur] : "\"error: test failed\""
        problem("FAILED", "cargo target " cur " (" label[group[cur]] "): its result line shows no failure, but cargo reports it failed (" why ")")
        failed[group[cur]]++
    } else if (failed_in[cur] > 0) {
        problem("FAILED", "cargo target " cur " (" label[group[cur]] "): " failed_in[cur] " failed")
    }
    cur = ""
}

# A target: "     Running unittests src/lib.rs (target/debug/deps/socks5d-...)".
/^[ \t]+Running (unittests )?[^ `]+ \([^ ]+\)$/ {
    close_target()
    cur = $(NF - 1)
    if (cur in group) cur = cur " #" NR  # the same path twice: keep both
    path = cur
    sub(/ #[0-9]+$/, "", path)
    group[cur] = path ~ /^(benches|examples)\// ? "tools" : \
                 path == "tests/sctp/main.rs" ? "sctp" : "cargo"
    targets[group[cur]]++
    ran_cargo = 1
    next
}
/^test result: (ok|FAILED)\. [0-9]+ passed; [0-9]+ failed;/ && cur != "" {
    has_result[cur] = 1
    passed[group[cur]] += $4
    n = $6
    sub(/;$/, "", n)
    failed[group[cur]] += n
    failed_in[cur] += n
    next
}
/^error: test failed, to rerun pass / && cur != "" { cargo_failed[cur] = 1; next }
/process didn.t exit successfully: .*\((signal|exit status)[^()]*\)$/ && cur != "" {
    c = $0
    sub(/.*\(/, "", c)
    sub(/\)$/, "", c)
    cause[cur] = c
    next
}
/^error: [0-9]+ targets? failed:?$/ { close_target(); next }
/^error: could not compile / { close_target(); compile_error = $0; next }
/^uml-run: / {
    if (cur != "" && !has_result[cur]) cause[cur] = cause[cur] (cause[cur] == "" ? "" : "; ") $0
    else uml_note = uml_note (uml_note == "" ? "" : "; ") $0
    next
}
/^make(\[[0-9]+\])?: \*\*\* / { make_note = make_note (make_note == "" ? "" : "; ") $0; next }
/^c-tests: [0-9]+ passed, [0-9]+ failed$/ {
    close_target()
    c_seen = 1
    passed["c"] = $2
    failed["c"] = $4
    next
}
/^\[ *[0-9]+\/[0-9]+\] / {
    close_target()
    match($0, /\/[0-9]+\]/)
    t = substr($0, RSTART + 1, RLENGTH - 2) + 0
    if (t > bench_total) bench_total = t
    next
}
/^bench: [0-9]+ runs in [^,]*, [0-9]+ failed/ {
    close_target()
    b_seen = 1
    bench_runs = $2
    match($0, /, [0-9]+ failed/)
    bench_failed = substr($0, RSTART + 2, RLENGTH - 9) + 0
    next
}
/^scale: [0-9]+ passed, [0-9]+ failed$/ {
    close_target()
    s_seen = 1
    passed["scale"] = $2
    failed["scale"] = $4
    next
}
/^deb: [0-9]+ passed, [0-9]+ failed$/ {
    close_target()
    d_seen = 1
    passed["deb"] = $2
    failed["deb"] = $4
    next
}
/^bench: failed: / { bench_notes = bench_notes (bench_notes == "" ? "" : "; ") substr($0, 16); next }

END {
    close_target()
    note = make_note != "" ? " (" make_note ")" : ""
    if (!ran_cargo) {
        why = compile_error != "" ? compile_error : "no \"Running\" line"
        problem("MISSING", "cargo test ran no target (" why ")")
        failed["cargo"]++
    } else if (targets["sctp"] == 0) {
        problem("MISSING", "the SCTP suite (tests/sctp/main.rs) did not run")
        failed["sctp"]++
    }
    if (!c_seen) {
        why = uml_note != "" ? uml_note : "did the C tests run at all?"
        problem("MISSING", "the C tests: no \"c-tests: N passed, N failed\" line (" why ")" note)
        failed["c"]++
    }
    else if (failed["c"] > 0)
        problem("FAILED", "the C tests: " failed["c"] " failed (their \"FAIL:\" lines say which)")
    passed["bench"] = 0
    if (!b_seen) {
        problem("MISSING", "the benchmark smoke: no \"bench: N runs in S s, M failed\" line" note)
        failed["bench"]++
    } else {
        if (bench_failed > 0)
            problem("FAILED", "the benchmark smoke: " bench_failed " of " bench_runs " runs failed" \
                    (bench_notes != "" ? " (" bench_notes ")" : ""))
        passed["bench"] = bench_runs > bench_failed ? bench_runs - bench_failed : 0
        failed["bench"] = bench_failed
        if (bench_total > bench_runs) {
            problem("MISSING", "the benchmark smoke: " bench_runs " of " bench_total " runs done")
            failed["bench"] += bench_total - bench_runs
        }
    }

    if (!s_seen) {
        problem("MISSING", "the scale smoke: no \"scale: N passed, N failed\" line" note)
        failed["scale"]++
    } else if (failed["scale"] > 0)
        problem("FAILED", "the scale smoke: " failed["scale"] " failed (its \"FAIL scale:\" lines say which)")

    if (!d_seen) {
        problem("MISSING", "the Debian package test: no \"deb: N passed, N failed\" line" note)
        failed["deb"]++
    } else if (failed["deb"] > 0)
        problem("FAILED", "the Debian package test: " failed["deb"] " failed (its \"FAIL deb:\" lines say which)")

    printf "\n"
    for (i = 1; i <= np; i++) print problems[i]
    if (np > 0) printf "\n"
    printf "socks5d, cargo targets:  %d passed, %d failed (%d targets)\n", passed["cargo"], failed["cargo"], targets["cargo"]
    printf "socks5d, SCTP suite:     %d passed, %d failed\n", passed["sctp"], failed["sctp"]
    printf "socks5d, C tests:        %d passed, %d failed\n", passed["c"], failed["c"]
    printf "tools (loadgen, soak):   %d passed, %d failed (%d targets)\n", passed["tools"], failed["tools"], targets["tools"]
    printf "benchmark smoke runs:    %d passed, %d failed\n", passed["bench"], failed["bench"]
    printf "scale smoke (in UML):    %d passed, %d failed\n", passed["scale"], failed["scale"]
    printf "Debian package:          %d passed, %d failed\n", passed["deb"], failed["deb"]
    p = passed["cargo"] + passed["sctp"] + passed["c"] + passed["tools"] + passed["bench"] + passed["scale"] + passed["deb"]
    f = failed["cargo"] + failed["sctp"] + failed["c"] + failed["tools"] + failed["bench"] + failed["scale"] + failed["deb"]
    printf "summary: %d passed, %d failed\n", p, f
    exit (f == 0 && p > 0 && np == 0) ? 0 : 1
}' "$1"
