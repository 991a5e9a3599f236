"""`dlvp-clip reproduce` as a user runs it: the smoke run end to end (and its resumption), the dry-run plan, refusals."""
import json, os, subprocess
from pathlib import Path

import pandas as pd

from dlvp_clip.reproduce import make_smoke_data

SWEEPS = ('depth', 'topk', 'components', 'hfd', 'backbone')

def _run(*args, timeout=300):
    return subprocess.run(['dlvp-clip', *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'})

def _main(capsys, *args):
    "The command in this process (faster than a subprocess for the checks that need no fresh interpreter)."
    from types import SimpleNamespace
    from dlvp_clip.cli import main
    rc = main(list(args))
    o = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=o.out, stderr=o.err)

def _state(out: Path) -> dict:
    "Every file that records finished work, with its content: a resumed run must leave them as they are."
    keep = ('epochs.jsonl', 'classes.jsonl', 'images.jsonl', 'state.pt', 'results.csv')
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob('*')) if p.name in keep}

def test_smoke_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path/'paper'
    r = _run('reproduce', '--smoke', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    plan = json.loads((out/'plan.json').read_text())
    assert [x['name'] for x in plan['runs']][:2] == ['main_mvtec', 'main_visa'] and plan['estimate']['method'].startswith('measured')
    assert plan['runs'][0]['status'].startswith('partial: ksdd2') and 'skipping ksdd2' in r.stdout
    main = pd.read_csv(out/'main_visa'/'results.csv')
    assert list(main[['seed', 'train_data', 'test_data']].itertuples(index=False, name=None)) == [(0, 'visa', 'mvtec')]
    assert (out/'main_visa'/'seed0'/'eval'/'mvtec'/'metrics.csv').exists()
    for s in SWEEPS:
        res = pd.read_csv(out/'sweeps'/s/'results.csv')
        assert len(res) >= 2 and set(res['seed']) == {0} and res['image_auroc'].between(0, 100).all(), s
    comp = pd.read_csv(out/'sweeps'/'components'/'results.csv')
    assert set(zip(comp['train_data'], comp['test_data'], comp['setting'])) == {
        (tr, te, s) for tr, te in (('visa', 'mvtec'), ('mvtec', 'visa')) for s in ('baseline', 'full')}
    before = _state(out)
    r2 = _run('reproduce', '--smoke', '--out', str(out))
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert _state(out) == before                         # nothing trained, evaluated or added again
    assert 'trained 1 epoch' not in r2.stdout and 'training already done' in r2.stdout
    from dlvp_clip.results import bundle_from_reproduce, read_bundle     # what `make_figures.py --from` reads
    b = read_bundle(bundle_from_reproduce(out))
    assert set(b.main()) == {'mvtec', 'visa'} and set(b.sweep('components')['test_data']) == {'mvtec'}
    assert len(b.gallery('mvtec')['images']) and len(b.text('visa')['dynamic']['features']) and b.about['seeds'] == [0]

def test_dry_run_plans_on_a_generated_root_and_writes_nothing(tmp_path, capsys):
    data = make_smoke_data(tmp_path/'data')
    r = _main(capsys, 'reproduce', '--dry-run', '--data-root', str(data), '--out', str(tmp_path/'out'), '--device', 'cpu',
              '--pretrained', str(tmp_path/'missing.safetensors'))
    assert r.returncode == 1, r.stderr[-3000:]          # a dry run checks what the real run needs, and fails naming it
    assert 'ESTIMATE, not measured' in r.stdout and 'main_visa' in r.stdout and 'sweeps/backbone/visa_to_mvtec' in r.stdout
    assert 'missing datasets: ksdd2 (expected' in r.stdout and 'refuses to start unless --skip-missing' in r.stdout
    assert 'disk (estimate):' in r.stdout and 'would stop the real run' in r.stderr and 'Traceback' not in r.stderr
    assert 'missing.safetensors does not exist' in r.stderr and 'dataset(s) missing: ksdd2' in r.stderr
    assert not (tmp_path/'out').exists()
    r = _main(capsys, 'reproduce', '--dry-run', '--data-root', str(data), '--out', str(tmp_path/'out'), '--device', 'cpu',
              '--pretrained', 'none', '--skip-missing')
    assert r.returncode == 0 and 'the real run can start' in r.stdout, r.stderr[-3000:]
    assert not (tmp_path/'out').exists()

def test_refuses_without_data_root_with_missing_data_or_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv('DLVP_CLIP_DATA', raising=False)
    r = _main(capsys, 'reproduce', '--out', str(tmp_path/'out'))
    assert r.returncode == 1 and '--data-root' in r.stderr and 'Traceback' not in r.stderr
    r = _main(capsys, 'reproduce', '--data-root', str(tmp_path/'nope'), '--out', str(tmp_path/'out'))
    assert r.returncode == 1 and 'is not a folder' in r.stderr and not (tmp_path/'out').exists()
    data = make_smoke_data(tmp_path/'data')             # MVTec-AD and VisA only: eleven targets missing
    r = _main(capsys, 'reproduce', '--data-root', str(data), '--out', str(tmp_path/'out'), '--device', 'cpu')
    assert r.returncode == 1 and '--skip-missing' in r.stderr and 'missing datasets: ksdd2' in r.stdout
    assert not (tmp_path/'out').exists()
    r = _main(capsys, 'reproduce', '--data-root', str(data), '--skip-missing', '--pretrained', str(tmp_path/'none.safetensors'),
              '--out', str(tmp_path/'out'), '--device', 'cpu')
    assert r.returncode == 1 and 'none.safetensors does not exist' in r.stderr and not (tmp_path/'out').exists()

def test_sweep_cli_named_settings_and_seeds(tmp_path, capsys):
    data = make_smoke_data(tmp_path/'data')
    out = tmp_path/'components'
    args = ['sweep', 'components', '--values', 'baseline', 'full', '--seeds', '0', '1', '--activation', 'gelu',
            '--train-data', 'mvtec', '--train-root', str(data), '--test-data', 'visa', '--test-root', str(data),
            '--image-size', '56', '--epochs', '1', '--batch-size', '4', '--out', str(out)]
    r = _main(capsys, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    res = pd.read_csv(out/'results.csv')
    assert list(zip(res['setting'], res['seed'])) == [('baseline', 0), ('baseline', 1), ('full', 0), ('full', 1)]
    assert set(res.columns) >= {'image_ap', 'pixel_ap', 'image_f1max', 'pixel_f1max', 'pixel_aupro', 'train_data', 'test_data'}
    r = _main(capsys, 'sweep', 'components', '--values', '+HFD', *args[5:])
    assert r.returncode == 1 and "unknown components setting '+HFD'" in r.stderr
