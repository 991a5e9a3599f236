"""Test environment: one torch thread (two threads collapse when another process is busy), no hub access."""
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('MPLBACKEND', 'Agg')

from pathlib import Path
import pytest
import torch

torch.set_num_threads(1)

import signal
# A shell without job control (`cmd &` in a script) starts its background jobs with SIGINT ignored, and an ignored
# signal stays ignored across exec: Python then installs no KeyboardInterrupt handler, in this process or in the
# commands the tests start, and the Ctrl-C tests would test nothing. Give them the Ctrl-C a terminal user has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN: signal.signal(signal.SIGINT, signal.default_int_handler)

from dlvp_clip.core import find_root

ROOT = find_root(Path(__file__))

@pytest.fixture
def root() -> Path: return ROOT

@pytest.fixture(scope='session')
def compare_smoke(tmp_path_factory):
    "`dlvp-clip compare --smoke` of the five methods, run once per session as a user runs it; (folder, stdout, seconds)."
    import subprocess, time
    out = tmp_path_factory.mktemp('compare')/'run'
    t0 = time.time()
    r = subprocess.run(['dlvp-clip', 'compare', '--smoke', '--methods', 'winclip,anomalyclip,adaclip,bayespfl,dlvp', '--out', str(out)], capture_output=True, text=True, timeout=900,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout, time.time() - t0

@pytest.fixture(autouse=True)
def _registry_isolated():
    """A notebook run in this process registers its own (notebook-defined) method classes, as it should inside that
    notebook; the next test must see the library's again, as a fresh `nbdev_test` worker process would."""
    from dlvp_clip.methods import registry
    for name in registry.BUILTIN: registry.method_info(name)       # imported (registered) before the snapshot
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear(); registry._REGISTRY.update(saved)
