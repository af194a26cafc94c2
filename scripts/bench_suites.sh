#!/usr/bin/env bash
# The public safety suites for two or more checkpoints, each a column of one scorecard
# (`tiller eval compare`, the first checkpoint the reference; BENCHMARKS.md "Public safety
# suites"): HarmBench's standard behaviours (200, text_all), XSTest (450: safe -> benign,
# unsafe -> harmful), CatQA (550), CoCoNot's original test set (1,001 prompts a model
# should not comply with -> harmful) and its contrast prompts (coconot_pref.jsonl, 927
# prompts a model should comply with -> benign). Greedy decoding, max_new_tokens as
# examples/pipeline.toml's eval stage (48), the rule-based refusal classifier. The data
# are read from ../shared/datasets/ (never copied into the repository).
#
#   scripts/bench_suites.sh OUT CHECKPOINT CHECKPOINT...
#   e.g. scripts/bench_suites.sh runs/suites models/smollm2-135m-instruct runs/loop/grpo
#
# Writes OUT/scorecard.html + scorecard.json, OUT/<checkpoint name>/report.html + .json,
# and OUT/bench.log (this script's lines). Environment: TILLER (the binary; default
# target/release/tiller if built, else target/debug/tiller), SAMPLE (answer a seeded
# subsample of N prompts of each file, `--sample`; default: every prompt), SEED (the
# subsample's seed, default 0), LIMIT (the first N rows of each file, for a timing run),
# MAX_NEW_TOKENS (48), BATCH (16), OMP_NUM_THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
out=$1
shift
data=../shared/datasets
tiller=${TILLER:-target/release/tiller}
[ -x "$tiller" ] || tiller=target/debug/tiller
args=(--which safety --max-new-tokens "${MAX_NEW_TOKENS:-48}" --batch-size "${BATCH:-16}")
[ -n "${LIMIT:-}" ] && args+=(--limit "$LIMIT")
[ -n "${SAMPLE:-}" ] && args+=(--sample "$SAMPLE" --sample-seed "${SEED:-0}")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$out"
log() { echo "[$(date -u '+%F %T') UTC] $*" | tee -a "$out/bench.log"; }

log "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo ' (with local changes)'); $tiller"
log "CPU $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
log "checkpoints: $*; options: ${args[*]}"
start=$SECONDS
"$tiller" eval compare "$@" --out "$out" "${args[@]}" \
    --harmful "$data/harmbench/harmbench_behaviors_text_all.csv" --harmbench standard \
    --harmful "$data/xstest-labeled/xstest_prompts.csv" \
    --harmful "$data/catqa/catqa_english.json" \
    --harmful "$data/coconot/coconot_eval.jsonl" \
    --benign "$data/coconot/coconot_pref.jsonl"
log "done in $((SECONDS - start)) s wall; load $(cut -d' ' -f1-3 /proc/loadavg)"
# The scorecard as a Markdown table (BENCHMARKS.md's): every checkpoint's rate with its
# Wilson 95% interval, and the exact McNemar p-value of its change against the first.
python3 - "$out/scorecard.json" > "$out/table.md" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))
names = [c["name"] for c in card["columns"]]
pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
head = ["suite", "figure", "n"] + names + [f"p ({n} vs {names[0]})" for n in names[1:]]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * 3 + "---:|" * (len(head) - 3))
for row in card["rows"]:
    cells = row["cells"]
    n = next((c["n"] for c in cells if c), 0)
    figs = []
    for c in cells:
        if not c or c["value"] is None:
            figs.append("n/a")
            continue
        i = c.get("interval")
        figs.append(pct(c["value"]) + (f" [{pct(i['lo'])}, {pct(i['hi'])}]" if i else ""))
    ps = [f"{c['change']['test']['p_value']:.3g}" if c and c.get("change") else "n/a" for c in cells[1:]]
    print("| " + " | ".join([row["suite"], row["figure"], str(n)] + figs + ps) + " |")
PY
cat "$out/table.md"
log "scorecard: $out/scorecard.html; table: $out/table.md"
