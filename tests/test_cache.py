"""The image cache and loader workers as the command line uses them: decoded once, reused, off with --no-cache, same numbers."""
import os, subprocess, sys

import pytest
import torch

from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
from dlvp_clip.methods.registry import save_model
from dlvp_clip.synthetic import make_synthetic
from dlvp_clip.testing import tiny_backbone

ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
ENV.pop('DLVP_CLIP_CACHE', None)

def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'dlvp_clip.cli', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp('cache')
    make_synthetic(d/'data', categories=('marble', 'ring'), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0)
    bb = tiny_backbone(image_size=56); torch.manual_seed(0)
    save_model(DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56, prompt_depth=3)), d/'m.safetensors')
    return d

def test_test_command_decodes_once_and_no_cache_gives_the_same_numbers(setup):
    d = setup
    args = ['test', '--data', 'synthetic', '--root', d/'data', '--ckpt', d/'m.safetensors', '--batch-size', '2', '--device', 'cpu']
    first = _cli(*args, '--out', d/'a', '--workers', '1')
    assert first.returncode == 0, first.stderr
    line = next(l for l in first.stdout.splitlines() if l.startswith('image cache:'))
    assert 'MiB in ' + str(d/'.dlvp-clip-cache') in line and 'decoded' in line          # default: beside the data, size printed
    again = _cli(*args, '--out', d/'b', '--workers', '0')
    assert again.returncode == 0 and 'decoded' not in next(l for l in again.stdout.splitlines() if l.startswith('image cache:'))
    plain = _cli(*args, '--out', d/'c', '--no-cache', '--workers', '0')
    assert plain.returncode == 0 and 'image cache' not in plain.stdout
    a, b, c = ((d/k/'synthetic'/'metrics.csv').read_text() for k in 'abc')
    assert a == b == c
    bad = _cli(*args, '--out', d/'e', '--no-cache', '--cache-dir', d/'x')
    assert bad.returncode == 1 and 'contradict' in bad.stderr and not (d/'x').exists() and not (d/'e').exists()
    bad = _cli(*args, '--out', d/'e', '--workers', '-2')
    assert bad.returncode == 1 and '--workers must be >= 0' in bad.stderr and not (d/'e').exists()
