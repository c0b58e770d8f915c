"""Run every benchmark in turn (make bench). Each prints its table and writes bench/results/*.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    failed = 0
    for script in ("pipeline_speed.py", "shipped_accuracy.py", "synth_speed.py"):
        print(f"\n== {script}", flush=True)
        failed |= subprocess.call([sys.executable, str(HERE / script)])
    sys.exit(failed)
