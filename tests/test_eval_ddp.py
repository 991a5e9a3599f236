"""`dlvp-clip test` keyed to its checkpoint, and sharded over processes under torchrun with the numbers of one process."""
import json, os, socket, subprocess, sys

import pytest
import torch

from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
from dlvp_clip.methods.registry import save_model
from dlvp_clip.synthetic import make_synthetic
from dlvp_clip.testing import tiny_backbone

ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}

def _cli(*args, launcher=(sys.executable, '-m')):
    return subprocess.run([*launcher, 'dlvp_clip.cli', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp('evalddp')
    make_synthetic(d/'data', categories=('marble', 'ring'), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0)
    bb = tiny_backbone(image_size=56)
    for name, seed in (('a', 0), ('b', 1)):                 # two checkpoints: same config, other weights
        torch.manual_seed(seed); save_model(DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56, prompt_depth=3)), d/f'{name}.safetensors')
    return d

def _jsonl(p): return [json.loads(l) for l in p.read_text().splitlines()]

def test_other_checkpoint_into_a_used_folder_is_refused(setup):
    d = setup
    args = ['test', '--data', 'synthetic', '--root', d/'data', '--out', d/'one', '--batch-size', '2', '--device', 'cpu']
    r = _cli(*args, '--ckpt', d/'a.safetensors'); assert r.returncode == 0, r.stderr
    run = json.loads((d/'one'/'synthetic'/'run.json').read_text())
    assert run['checkpoint']['path'] == str(d/'a.safetensors') and len(run['checkpoint']['sha256']) == 64
    assert len(run['manifest_sha256']) == 64 and run['version']
    before = (d/'one'/'synthetic'/'metrics.csv').read_text()
    r = _cli(*args, '--ckpt', d/'b.safetensors')
    assert r.returncode == 1 and 'checkpoint.sha256 was' in r.stderr and 'weights_sha256 was' in r.stderr, r.stderr
    assert '| mean |' not in r.stdout and (d/'one'/'synthetic'/'metrics.csv').read_text() == before

def test_two_gloo_processes_give_the_numbers_of_one(setup):
    d = setup
    if not (d/'one'/'synthetic'/'classes.jsonl').exists():
        assert _cli('test', '--data', 'synthetic', '--root', d/'data', '--out', d/'one', '--batch-size', '2', '--device', 'cpu',
                    '--ckpt', d/'a.safetensors').returncode == 0
    r = _cli('test', '--data', 'synthetic', '--root', d/'data', '--out', d/'two', '--batch-size', '2', '--device', 'cpu', '--ckpt', d/'a.safetensors',
             launcher=('torchrun', '--nproc_per_node', '2', '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), '-m'))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('| mean |') == 1                                  # rank 0 reports, once
    one, two = (sorted(_jsonl(d/k/'synthetic'/'images.jsonl'), key=lambda x: x['path']) for k in ('one', 'two'))
    assert [x['path'] for x in one] == [x['path'] for x in two] == sorted({x['path'] for x in two})   # every image once
    assert any(sum(x['cls'] == c for x in two) % 4 for c in ('marble', 'ring'))          # a class's last step is uneven over 2×2
    assert max(abs(x['score'] - y['score']) for x, y in zip(one, two)) < 1e-6           # measured: 0 (same batches)
    m1, m2 = (_jsonl(d/k/'synthetic'/'classes.jsonl') for k in ('one', 'two'))
    assert m1 == m2
