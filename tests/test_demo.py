"""`dlvp-clip demo` end to end (as a user runs it), learning on held-out categories, and the paper notebooks on its run."""
import os, subprocess

import pytest
from nbdev.test import test_nb as run_notebook

from conftest import ROOT

PAPER_NBS = sorted((ROOT/'nbs'/'paper').glob('*.ipynb'))
SMALL_SWEEPS = {'depth': [1, 3], 'topk': [1, 2], 'hfd': ['wavelet', 'off'], 'components': ['baseline', 'full'],
                'backbone': [('DLVP-Tiny-14', 56), ('DLVP-Tiny-14', 70)]}

@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    base = tmp_path_factory.mktemp('paper')
    r = subprocess.run(['dlvp-clip', 'demo', '--out', str(base/'demo')], capture_output=True, text=True, timeout=900,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    (base/'demo_stdout.txt').write_text(r.stdout)
    return base

@pytest.fixture(scope='module')
def run_bundle(demo_run, compare_smoke):
    "A results bundle made from the demo's run folder, two-setting sweeps and the `compare --smoke` run, as scripts/make_figures.py makes one."
    from dlvp_clip import sweep
    from dlvp_clip.backbone import TINY_CLIP
    from dlvp_clip.demo import DEMO_TEST, DEMO_TRAIN
    from dlvp_clip.readers import scan_dataset
    from dlvp_clip.results import bundle_from_run, compare_tables
    from dlvp_clip.train import TrainConfig
    man = scan_dataset('synthetic', demo_run/'demo'/'data')
    sweeps = {}
    for kind, values in SMALL_SWEEPS.items():
        sweeps[kind] = sweep.run_sweep(kind, values, man, man, demo_run/'sweeps'/kind, train_classes=DEMO_TRAIN[:1],
                                       test_classes=DEMO_TEST[:2], backbone=TINY_CLIP, image_size=56, log=lambda s: None,
                                       tcfg=TrainConfig(lr=1e-3, epochs=1, batch_size=8, seed=0))
    about = dict(backbone=TINY_CLIP, pretrained=None, image_size=112, command='tests/test_demo.py')
    return bundle_from_run(demo_run/'demo', demo_run/'bundle', about, man, DEMO_TEST, sweeps, compare=compare_tables(compare_smoke[0]))

@pytest.mark.parametrize('nb', PAPER_NBS, ids=[p.stem for p in PAPER_NBS])
def test_paper_notebook_renders_from_a_run(nb, run_bundle, tmp_path, monkeypatch):
    "Each paper notebook renders from a bundle made from a fresh run (not only from the committed one)."
    monkeypatch.setenv('DLVP_RESULTS', str(run_bundle)); monkeypatch.setenv('DLVP_FIGURES', str(tmp_path))
    ok, _ = run_notebook(nb, skip_flags=[], showerr=True)
    assert ok, f"{nb.name} failed (traceback above)"
    assert list(tmp_path.glob('*')), f"{nb.name} wrote nothing into the figures folder"

def test_demo_reports_and_says_it_is_a_stand_in(demo_run):
    out = (demo_run/'demo_stdout.txt').read_text()
    assert 'tiny randomly initialised backbone' in out and '| mean |' in out and 'results.md' in out
    assert (demo_run/'demo'/'train'/'checkpoints'/'epoch_007.safetensors').exists()

def test_learning_is_real(demo_run):
    "Training on 4 synthetic categories lifts pixel AUROC on 4 held-out ones well above the untrained model's."
    import pandas as pd
    after = pd.read_csv(demo_run/'demo'/'eval'/'synthetic'/'metrics.csv').set_index('cls').loc['mean', 'pixel_auroc']
    before = pd.read_csv(demo_run/'demo'/'eval_untrained'/'synthetic'/'metrics.csv').set_index('cls').loc['mean', 'pixel_auroc']
    # measured with the tiny random backbone, held-out categories, σ = 4: seed 0 61.4 after vs 45.6 before; seed 1 57.2 vs 46.3
    # (67.3 before the image head's X_p started at zero, issue 9: the head now begins at CLIP's CLS score and learns less here)
    assert after >= 52.0 and after >= before + 8.0, (before, after)

def test_demo_figures_carry_the_stand_in_note(demo_run):
    md = (demo_run/'demo'/'results.md').read_text()
    assert "Tiny random backbone — illustrates the pipeline, not the paper's result." in md
    assert list((demo_run/'demo'/'figures').glob('gallery_synthetic_*.png'))
