"""Execute notebooks in place in a Jupyter kernel, keeping their outputs (then `nbdev_clean`), as a reader's "Run All".

    python scripts/execute_notebooks.py                       # every notebook in nbs/ (modules, index, paper)
    python scripts/execute_notebooks.py nbs/40_plots.ipynb    # some of them

Notebooks are committed executed so that they read completely on GitHub and in the documentation site.
Paper notebooks read the committed results bundle (figures/bundle) unless DLVP_RESULTS names another,
and write their figures into figures/. Runs two notebooks at a time, one torch thread each.
"""
import argparse, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def kernel_env(**extra) -> dict:
    "The environment a notebook kernel gets: one thread, no hub, inline figures (never a non-interactive MPLBACKEND)."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'PYTHONHASHSEED': '0', **extra}
    env.pop('MPLBACKEND', None)
    return env

def execute(nbs: list, env: dict = None, workers: int = 2) -> list:
    "Execute each notebook in place; returns the names of those that failed (their stderr is printed)."
    env = env or kernel_env()
    def one(nb):
        t = time.time()
        r = subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'notebook', '--execute', '--inplace',
                            '--ExecutePreprocessor.timeout=900', str(nb)], env=env, capture_output=True, text=True, cwd=ROOT)
        return nb, r, time.time() - t
    with ThreadPoolExecutor(workers) as ex: results = list(ex.map(one, nbs))
    failed = []
    for nb, r, secs in results:
        print(f"{'ok  ' if r.returncode == 0 else 'FAIL'} {Path(nb).relative_to(ROOT)} ({secs:.0f}s)", flush=True)
        if r.returncode: failed.append(Path(nb).name); print(r.stderr[-3000:])
    subprocess.run(['nbdev_clean'], cwd=ROOT, check=True)
    return failed

def all_notebooks() -> list:
    return sorted(p for p in (ROOT/'nbs').rglob('*.ipynb') if not any(s.startswith(('_', '.')) for s in p.relative_to(ROOT/'nbs').parts))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to execute (default: all of nbs/)')
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args()
    nbs = [Path(p).resolve() for p in a.notebooks] or all_notebooks()
    missing = [str(p) for p in nbs if not p.is_file()]
    if missing: sys.exit(f"no such notebook: {', '.join(missing)}")
    sys.exit(1 if execute(nbs, workers=a.workers) else 0)
