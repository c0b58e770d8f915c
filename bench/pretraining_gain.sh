#!/usr/bin/env bash
# Does synthetic pretraining help on real fingers? (issue 3's "number that matters", first cut)
# Trains the small tower on real training databases from scratch, and fine-tunes the synthetic-
# pretrained run (runs/pretrained, made by configs/pretrained.toml) on the same data; evaluates
# both and the synthetic-only model on the held-out FVC2004 DB1-3_B. Prints a table, writes
# bench/results/pretraining_gain.json. About 6 minutes on 2 cores.
#   bash bench/pretraining_gain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/siamid
W=$(mktemp -d)
[ -f runs/pretrained/best.pt ] || { echo "runs/pretrained/best.pt missing: train configs/pretrained.toml first"; exit 1; }
sed 's/^init = .*/init = ""/; s/^lr = 0.0005/lr = 0.002/' configs/finetune_real.toml > "$W/real_only.toml"
$S train --config "$W/real_only.toml" --run "$W/real" > "$W/real.log" 2>&1
$S train --config configs/finetune_real.toml --run "$W/tuned" > "$W/tuned.log" 2>&1
$S export "$W/real" --out "$W/models/real" --no-int8 > /dev/null
$S export "$W/tuned" --out "$W/models/tuned" --no-int8 > /dev/null
HELD=(../shared/data/fvc2004/DB1_B ../shared/data/fvc2004/DB2_B ../shared/data/fvc2004/DB3_B)
$S evaluate "${HELD[@]}" --model "$(ls "$W"/models/real/*.onnx)" --out "$W/eval_real" > /dev/null
$S evaluate "${HELD[@]}" --model "$(ls "$W"/models/tuned/*.onnx)" --out "$W/eval_tuned" > /dev/null
$S evaluate "${HELD[@]}" --out "$W/eval_synthetic" > /dev/null
.venv/bin/python - "$W" <<'PY'
import json, statistics, sys
from pathlib import Path
sys.path.insert(0, "bench")
from common import machine, print_table, write_json
w = Path(sys.argv[1]); rows, out = [], {"machine": machine(), "held_out": {}}
for name, label in (("real", "real only"), ("synthetic", "synthetic only (shipped)"), ("tuned", "synthetic + real fine-tune")):
    rep = json.loads((w / f"eval_{name}" / "report.json").read_text())["datasets"]
    eers = {db: v["fvc"]["summary"]["eer"] for db, v in rep.items()}
    alls = {db: v["all"]["summary"]["eer"] for db, v in rep.items()}
    out["held_out"][name] = {"fvc_eer": eers, "all_pairs_eer": alls}
    rows.append([label, *[f"{100 * eers[d]:.2f}%" for d in sorted(eers)],
                 f"{100 * statistics.mean(eers.values()):.2f}%", f"{100 * statistics.mean(alls.values()):.2f}%"])
dbs = sorted(out["held_out"]["real"]["fvc_eer"])
print("held-out EER, FVC protocol (280 genuine / 45 impostor per database); macro all-pairs (2,880 impostor each)")
print_table(["training", *dbs, "macro (FVC)", "macro (all pairs)"], rows)
print("written to", write_json("pretraining_gain", out))
PY
