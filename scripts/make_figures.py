"""Regenerate every figure and table in figures/ in one command.

    python scripts/make_figures.py [--fresh]

1. `dlvp-clip demo` into runs/demo (skipped when it exists, unless --fresh);
2. the tiny-backbone sweeps the paper notebooks plot (prompt depth; input size) into runs/sweeps;
3. every notebook in nbs/paper/, executed in order, writing into figures/.

Without real weights all of this runs on the tiny random backbone and the synthetic data, and every
figure says so. With real weights, run the paper's sweeps (`dlvp-clip sweep ...`) and evaluations into
runs/ instead and re-run step 3 (set DLVP_RUN / DLVP_SWEEPS to point the notebooks at them).
"""
import argparse, shutil, sys, time
from pathlib import Path

from dlvp_clip.core import find_root, project_paths

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fresh', action='store_true', help='delete runs/demo and runs/sweeps first')
    a = ap.parse_args()
    paths = project_paths(find_root(Path(__file__)))
    run, sweeps = paths.runs/'demo', paths.runs/'sweeps'
    if a.fresh: shutil.rmtree(run, ignore_errors=True); shutil.rmtree(sweeps, ignore_errors=True)
    t0 = time.time()
    from dlvp_clip.backbone import TINY_CLIP
    from dlvp_clip.cli import DEMO_TEST, DEMO_TRAIN, run_demo
    from dlvp_clip.readers import scan_dataset
    from dlvp_clip.sweep import run_sweep
    from dlvp_clip.train import TrainConfig
    if not (run/'eval').exists(): run_demo(run)
    man = scan_dataset('synthetic', run/'data')
    kw = dict(train_classes=DEMO_TRAIN, test_classes=DEMO_TEST, backbone=TINY_CLIP,
              tcfg=TrainConfig(lr=1e-3, epochs=4, batch_size=8, seed=0, mosaic=0.2))
    run_sweep('depth', [1, 3, 6, 9, 12], man, man, sweeps/'depth', image_size=112, **kw)
    run_sweep('backbone', [(TINY_CLIP, 112), (TINY_CLIP, 168)], man, man, sweeps/'backbone', **kw)
    from nbdev.test import test_nb
    failed = []
    for nb in sorted((paths.nbs/'paper').glob('*.ipynb')):
        ok, secs = test_nb(nb, skip_flags=[], showerr=True)
        print(f"{'ok  ' if ok else 'FAIL'} {nb.name} ({secs:.0f}s)")
        if not ok: failed.append(nb.name)
    print(f"figures in {paths.figures} ({time.time() - t0:.0f}s)")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
