"""Every notebook executes as `nbdev_test` runs it (same function, `#| slow`/`#| gpu` skipped), and in plain Jupyter."""
import json, os, subprocess, sys

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

from test_repo import NBS, ROOT

PAPER_NBS = sorted((ROOT/'nbs'/'paper').glob('*.ipynb'))

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NBS])
def test_notebook_executes(nb, tmp_path, monkeypatch):
    monkeypatch.setenv('DLVP_FIGURES', str(tmp_path))     # paper notebooks write here, never into the checkout's figures/
    monkeypatch.delenv('DLVP_RESULTS', raising=False)     # ... and read the committed bundle
    ok, secs = run_notebook(nb, skip_flags=get_config(path=ROOT).tst_flags.split(), showerr=True)
    assert ok, f"{nb.name} failed under nbdev_test (traceback above)"

def _outputs(nb):
    return [o for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]

def _has_image(nb): return any('image/png' in o.get('data', {}) for o in _outputs(nb))

def test_notebooks_are_committed_executed():
    "Each notebook carries outputs; paper notebooks and module notebooks that plot carry inline figures; all light."
    has_code = lambda p: any(c['cell_type'] == 'code' for c in json.loads(p.read_text())['cells'])
    bare = [p.name for p in NBS if has_code(p) and not _outputs(p)]
    assert not bare, f"notebooks committed without outputs (run python scripts/execute_notebooks.py): {bare}"
    plots = [p for p in NBS if p in PAPER_NBS or 'plt.' in p.read_text() or 'plot_' in p.read_text()]
    no_fig = [p.name for p in plots if not _has_image(p)]
    assert not no_fig, f"notebooks that plot but show no figure: {no_fig}"
    size = sum(len(json.dumps(_outputs(p))) for p in NBS)
    assert size < 15e6, f"notebook outputs total {size / 1e6:.1f} MB (keep under 15 MB: lower dpi or fewer figures)"

def test_errors_and_stale_outputs_are_not_committed():
    "No committed output is an error traceback."
    errs = [p.name for p in NBS if any(o.get('output_type') == 'error' for o in _outputs(p))]
    assert not errs, f"notebooks committed with error outputs: {errs}"

def test_run_all_needs_nothing_nbdev_skips():
    "Plain Jupyter runs every cell: no notebook may rely on nbdev skipping `eval: false` cells."
    bad = [p.name for p in NBS for c in json.loads(p.read_text())['cells']
           if c['cell_type'] == 'code' and any(l.replace(' ', '').startswith('#|eval:false') for l in c['source'])]
    assert not bad, f"cells only nbdev skips (show such commands in a markdown block instead): {bad}"

def test_paper_notebooks_run_in_plain_jupyter(tmp_path):
    "Run All in a real kernel (nbconvert --execute) on a fresh clone: each paper notebook renders from the committed bundle."
    env = {**os.environ, 'DLVP_FIGURES': str(tmp_path/'figures'), 'OMP_NUM_THREADS': '1'}
    env.pop('DLVP_RESULTS', None); env.pop('MPLBACKEND', None)     # a kernel shows figures inline, as a reader's does
    r = subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'notebook', '--execute', '--output-dir', str(tmp_path),
                        *map(str, PAPER_NBS)], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for nb in PAPER_NBS: assert _has_image(tmp_path/nb.name), f"{nb.name} ran but shows no figure"
    assert len(list((tmp_path/'figures').glob('*.png'))) >= len(PAPER_NBS)
