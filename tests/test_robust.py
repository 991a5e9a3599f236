"""Faults a user meets on real disks and machines (issue 19, library side): a full disk, a second run into the same
folder, a loader worker that dies or hangs, result files that list missing maps. Each fault is injected, and each
test failed before its fix."""
import errno, json, os, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

from dlvp_clip.core import LOCK_NAME, DiskFullError, FolderBusyError, LoaderWorkerError, folder_lock
from dlvp_clip.dataset import AnomalyDataset
from dlvp_clip.evaluate import evaluate
from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
from dlvp_clip.readers import scan_dataset
from dlvp_clip.synthetic import make_synthetic
from dlvp_clip.testing import tiny_backbone
from dlvp_clip.train import TrainConfig, train

ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
TINY = ['--backbone', 'DLVP-Tiny-14', '--image-size', '56']

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')/'data'
    make_synthetic(root, categories=('woven', 'disc'), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0)
    return root, scan_dataset('synthetic', root)

def _model(seed=0):
    bb = tiny_backbone(image_size=56)
    torch.manual_seed(seed)
    return DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56, prompt_depth=3))

def _ds(man, model):
    return AnomalyDataset(man, image_size=56, mean=model.backbone.mean, std=model.backbone.std, seed=0)

def _temporaries(folder: Path) -> list:
    return [p.name for p in folder.rglob('*') if p.name.endswith('.tmp') or p.name == LOCK_NAME]

def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'dlvp_clip.cli', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)

# -- item 3: a full disk --------------------------------------------------------------------------------------------

def _full_after(n: int):
    "A safetensors writer that fails like a full disk after `n` good writes."
    import safetensors.torch as st
    real, calls = st.save_file, []
    def save_file(*a, **k):
        calls.append(1)
        if len(calls) > n: raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        return real(*a, **k)
    return save_file

def test_disk_full_in_train_keeps_the_last_checkpoint_and_resumes(data, tmp_path, monkeypatch):
    _, man = data
    model = _model(); out = tmp_path/'run'
    tcfg = TrainConfig(epochs=3, batch_size=4, seed=0)
    monkeypatch.setattr('safetensors.torch.save_file', _full_after(1))            # epoch 1 saved, epoch 2's weights hit the full disk
    with pytest.raises(DiskFullError) as e: train(model, _ds(man, model), tcfg, out, progress=False)
    assert 'the disk is full' in str(e.value) and 'epoch_001.safetensors' in str(e.value) and 'free there' in str(e.value)
    assert sorted(p.name for p in (out/'checkpoints').iterdir()) == ['epoch_000.safetensors', 'state.pt']
    assert torch.load(out/'checkpoints'/'state.pt', weights_only=True)['epoch'] == 0 and not _temporaries(out)
    monkeypatch.undo()                                                             # space freed: the same run continues
    model = _model()
    hist = train(model, _ds(man, model), tcfg, out, resume=True, progress=False)
    assert [h['epoch'] for h in hist] == [2, 3] and not _temporaries(out)
    assert [json.loads(l)['epoch'] for l in (out/'epochs.jsonl').read_text().splitlines()] == [1, 2, 3]

def test_disk_full_in_test_keeps_results_whole_and_the_rerun_matches(data, tmp_path, monkeypatch):
    _, man = data
    model = _model()
    clean = evaluate(model, man, tmp_path/'clean', batch_size=2, progress=False)
    import dlvp_clip.evaluate as ev
    real, calls = ev._save_npy, []
    def full(path, a):
        calls.append(1)
        if len(calls) > 2: raise OSError(errno.ENOSPC, 'No space left on device')
        real(path, a)
    monkeypatch.setattr(ev, '_save_npy', full)
    with pytest.raises(DiskFullError, match='the disk is full'): evaluate(model, man, tmp_path/'full', batch_size=2, progress=False)
    run = tmp_path/'full'/'synthetic'
    assert not _temporaries(run)
    rows = [json.loads(l) for l in (run/'images.jsonl').read_text().splitlines()]   # whole lines, each map it lists is there
    assert len(rows) == 4 and all((run/r['map']).exists() for r in rows)
    monkeypatch.undo()
    again = evaluate(model, man, tmp_path/'full', batch_size=2, progress=False)
    assert again.round(10).to_dict() == clean.round(10).to_dict()

# -- item 5: one writer per folder ------------------------------------------------------------------------------------

def test_a_second_train_or_test_into_a_busy_folder_is_refused(data, tmp_path):
    root, _ = data
    out = tmp_path/'run'
    with folder_lock(out, 'training run'):                                         # another `train` is writing out/
        r = _cli('train', '--data', 'synthetic', '--root', root, '--out', out, *TINY, '--epochs', '1', '--batch-size', '4')
        assert r.returncode != 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
        assert f'in use by another training run: process {os.getpid()}' in r.stderr and '--out NEW_FOLDER' in r.stderr
    assert not out.exists()                                                        # nothing written by the refused run
    model = _model(); ev = tmp_path/'eval'
    with folder_lock(ev/'synthetic', 'evaluation'):
        with pytest.raises(FolderBusyError, match=f'another evaluation: process {os.getpid()}'):
            evaluate(model, data[1], ev, progress=False)

def test_two_real_train_runs_race_and_one_is_refused(data, tmp_path):
    root, _ = data
    out = tmp_path/'run'
    base = ['train', '--data', 'synthetic', '--root', root, '--out', out, *TINY, '--batch-size', '4', '--workers', '0']
    args = [*base, '--epochs', '200']
    first = subprocess.Popen([sys.executable, '-m', 'dlvp_clip.cli', *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        t0 = time.time()
        while not (out/LOCK_NAME).exists() and time.time() - t0 < 120 and first.poll() is None: time.sleep(0.2)
        assert (out/LOCK_NAME).exists(), 'the first run never started'
        r = _cli(*args)
        assert r.returncode != 0 and f'process {first.pid}' in r.stderr, r.stderr[-2000:]
    finally: first.kill(); first.wait()
    with folder_lock(out): pass                                                    # the SIGKILLed run's folder is free again at once
    assert not (out/LOCK_NAME).exists()

# -- item 4: a loader worker that dies or hangs -------------------------------------------------------------------

def _dying(how: str):
    orig = AnomalyDataset.__getitem__
    def getitem(self, i):
        if torch.utils.data.get_worker_info() is not None and i == 3:
            if how == 'exit': os._exit(1)
            time.sleep(120)
        return orig(self, i)
    return getitem

@pytest.mark.parametrize('how', ['exit', 'hang'])
def test_a_dead_or_silent_loader_worker_ends_test_with_advice(data, tmp_path, monkeypatch, how):
    _, man = data
    monkeypatch.setattr(AnomalyDataset, '__getitem__', _dying(how))
    monkeypatch.setenv('DLVP_CLIP_LOADER_TIMEOUT', '4')
    t0 = time.time()
    with pytest.raises(LoaderWorkerError, match='--workers 0'): evaluate(_model(), man, tmp_path/'e', batch_size=2, workers=2, progress=False)
    assert time.time() - t0 < 60

def test_a_dead_loader_worker_ends_train_with_advice(data, tmp_path, monkeypatch):
    _, man = data
    model = _model()
    monkeypatch.setattr(AnomalyDataset, '__getitem__', _dying('exit'))
    with pytest.raises(LoaderWorkerError, match='--resume'):
        train(model, _ds(man, model), TrainConfig(epochs=1, batch_size=2, num_workers=2), tmp_path/'t', progress=False)
    assert not (tmp_path/'t'/LOCK_NAME).exists()

# -- item 9: images.jsonl lists only maps that exist ---------------------------------------------------------------

def test_results_list_no_deleted_map_and_image_size_maps_are_offered(data, tmp_path):
    _, man = data
    model = _model()
    evaluate(model, man, tmp_path/'a', batch_size=2, progress=False)
    rows = [json.loads(l) for l in (tmp_path/'a'/'synthetic'/'images.jsonl').read_text().splitlines()]
    assert rows and all(r['map'] is None for r in rows)
    evaluate(model, man, tmp_path/'b', batch_size=2, progress=False, keep_maps='image')
    run = tmp_path/'b'/'synthetic'
    for r in map(json.loads, (run/'images.jsonl').read_text().splitlines()):
        from PIL import Image
        h, w = np.asarray(Image.open(man.root + '/' + r['path'])).shape[:2]
        assert np.load(run/r['image_map']).shape == (h, w) and np.load(run/r['map']).shape == (56, 56)
