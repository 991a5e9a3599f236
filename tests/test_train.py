"""Training, evaluation and prediction as a user runs them: the CLI end to end, DDP, bad inputs."""
import json, os, shlex, shutil, signal, socket, subprocess, sys, time

import pytest
import torch
from safetensors.torch import load_file

from dlvp_clip.synthetic import make_synthetic

ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
TINY = ['--backbone', 'DLVP-Tiny-14', '--image-size', '56']

def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, '-m', 'dlvp_clip.cli', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')/'data'
    make_synthetic(root, categories=('woven', 'disc', 'ring'), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0)
    cfg = root.parent/'cfg.json'; cfg.write_text(json.dumps(dict(prompt_depth=3)))
    return root, cfg

@pytest.fixture(scope='module')
def ckpt(data, tmp_path_factory):
    root, cfg = data
    out = tmp_path_factory.mktemp('run')/'train'
    r = _cli('train', '--data', 'synthetic', '--root', root, '--classes', 'woven', 'disc', '--out', out, *TINY,
             '--epochs', '1', '--batch-size', '4', '--seed', '0', '--model-config', cfg)
    assert r.returncode == 0, r.stderr
    assert 'tiny randomly initialised backbone' in r.stdout
    return out/'checkpoints'/'epoch_000.safetensors'

def test_train_writes_logs_config_and_checkpoints(ckpt):
    run = ckpt.parent.parent
    assert (run/'config.json').exists() and (run/'log.csv').exists() and (run/'epochs.jsonl').exists()
    cfg = json.loads((run/'config.json').read_text())
    assert cfg['train']['betas'] == [0.5, 0.999] and cfg['model']['prompt_depth'] == 3

def test_resume_continues_an_interrupted_run(data, ckpt, tmp_path):
    root, cfg = data
    import shutil
    run = tmp_path/'run'; shutil.copytree(ckpt.parent.parent, run)
    args = ['train', '--data', 'synthetic', '--root', root, '--classes', 'woven', 'disc', '--out', run, *TINY,
            '--epochs', '2', '--batch-size', '4', '--seed', '0', '--model-config', cfg]
    assert _cli(*args).returncode == 1          # refuses to overwrite a run without --resume
    r = _cli(*args, '--resume')
    assert r.returncode == 0, r.stderr
    assert (run/'checkpoints'/'epoch_001.safetensors').exists()
    assert [json.loads(l)['epoch'] for l in (run/'epochs.jsonl').read_text().splitlines()] == [1, 2]

def _train_args(root, cfg, run, *extra, classes=('woven', 'disc')):
    return ['train', '--data', 'synthetic', '--root', root, '--classes', *classes, '--out', run, *TINY,
            '--batch-size', '4', '--seed', '0', '--model-config', cfg, *extra]

def test_resume_refuses_changed_settings_and_keeps_config(data, ckpt, tmp_path):
    root, cfg = data
    run = tmp_path/'run'; shutil.copytree(ckpt.parent.parent, run)
    before = (run/'config.json').read_text()
    for flag, val, name in (('--lr', '1e-3', 'train.lr'),):
        r = _cli(*_train_args(root, cfg, run, '--epochs', '2', flag, val, '--resume'))
        assert r.returncode == 1 and f'{name} was' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    r = _cli(*_train_args(root, cfg, run, '--epochs', '2', '--resume', classes=('woven',)))
    assert r.returncode == 1 and "dataset.classes was ['disc', 'woven'], now ['woven']" in r.stderr, r.stderr
    assert (run/'config.json').read_text() == before and not (run/'checkpoints'/'epoch_001.safetensors').exists()

def test_truncated_state_gives_advice_that_works(data, ckpt, tmp_path):
    root, cfg = data
    run = tmp_path/'run'; shutil.copytree(ckpt.parent.parent, run)
    st = run/'checkpoints'/'state.pt'; st.write_bytes(st.read_bytes()[:200])
    r = _cli(*_train_args(root, cfg, run, '--epochs', '2', '--resume'))
    assert r.returncode == 1 and 'new folder (--out NEW_FOLDER)' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    shutil.rmtree(run)                                                                       # the advice (or a new folder) works
    assert _cli(*_train_args(root, cfg, run, '--epochs', '1')).returncode == 0

def test_ctrl_c_says_what_is_saved_and_how_to_resume(data, tmp_path):
    root, cfg = data
    run = tmp_path/'run'
    args = [str(a) for a in _train_args(root, cfg, run, '--epochs', '500')]
    p = subprocess.Popen([sys.executable, '-m', 'dlvp_clip.cli', *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    t0 = time.time()
    while not (run/'checkpoints'/'state.pt').exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'Traceback' not in err and 'of 500 is saved' in err, err
    cmd = shlex.split(err.strip().splitlines()[-1])
    assert cmd == ['dlvp-clip', *args, '--resume']
    assert not list(run.rglob('.*.tmp'))
    epochs = [json.loads(l)['epoch'] for l in (run/'epochs.jsonl').read_text().splitlines()]
    r = _cli(*cmd[1:], '--epochs', str(epochs[-1] + 1))                        # the printed command, one more epoch
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)['epoch'] for l in (run/'epochs.jsonl').read_text().splitlines()] == list(range(1, epochs[-1] + 2))

def test_sigkill_then_resume_leaves_no_temp_files_and_logs_each_step_once(data, tmp_path):
    root, cfg = data
    run = tmp_path/'run'
    p = subprocess.Popen([sys.executable, '-m', 'dlvp_clip.cli', *map(str, _train_args(root, cfg, run, '--epochs', '500'))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()                                    # kill inside an epoch that is logged but not saved
    while p.poll() is None and time.time() - t0 < 300 and not ((run/'checkpoints'/'state.pt').exists() and
          any(l.startswith('2,') for l in (run/'log.csv').read_text().splitlines())): time.sleep(0.02)
    p.kill(); p.wait()
    saved = max(json.loads(l)['epoch'] for l in (run/'epochs.jsonl').read_text().splitlines() if l.endswith('}'))
    r = _cli(*_train_args(root, cfg, run, '--epochs', saved + 1, '--resume')); assert r.returncode == 0, r.stderr
    assert not [q for q in run.rglob('*') if q.name.startswith('.')]
    assert [json.loads(l)['epoch'] for l in (run/'epochs.jsonl').read_text().splitlines()] == list(range(1, saved + 2))
    steps = [int(l.split(',')[1]) for l in (run/'log.csv').read_text().splitlines()[1:]]
    assert steps == sorted(set(steps))                                   # each optimizer step logged once

def test_test_command_writes_tables_and_predict_writes_overlays(data, ckpt, tmp_path):
    root, _ = data
    r = _cli('test', '--ckpt', ckpt, '--data', 'synthetic', '--root', root, '--classes', 'ring', '--out', tmp_path/'eval', '--batch-size', '4')
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'eval'/'synthetic'/'metrics.csv').exists() and '| mean |' in r.stdout
    img = sorted((root/'ring'/'test'/'scratch').glob('*.png'))[0]
    r = _cli('predict', '--ckpt', ckpt, img, root/'ring'/'test'/'good', '--out', tmp_path/'pred', '--class-name', 'ring')
    assert r.returncode == 0, r.stderr                                   # a file and a folder of 2 images
    scores = json.loads((tmp_path/'pred'/'scores.json').read_text())['images']
    assert len(scores) == 3 and all(0 <= v['score'] <= 1 for v in scores.values())
    assert len(list((tmp_path/'pred').rglob('*_overlay.png'))) == 3 and len(list((tmp_path/'pred').rglob('*.npy'))) == 3
    assert 'wrote 3 overlays' in r.stdout

def test_bad_inputs_fail_clearly_and_leave_nothing(data, ckpt, tmp_path):
    root, _ = data
    r = _cli('train', '--data', 'mvtec3', '--root', root, '--out', tmp_path/'a', *TINY)
    assert r.returncode == 1 and 'unknown dataset' in r.stderr and not (tmp_path/'a').exists()
    r = _cli('train', '--data', 'synthetic', '--root', tmp_path/'missing', '--out', tmp_path/'b', *TINY)
    assert r.returncode == 1 and 'does not exist' in r.stderr and not (tmp_path/'b').exists()
    bad = tmp_path/'bad.safetensors'; bad.write_bytes(ckpt.read_bytes()[:100])
    r = _cli('test', '--ckpt', bad, '--data', 'synthetic', '--root', root, '--out', tmp_path/'c')
    assert r.returncode == 1 and 'bad.safetensors' in r.stderr and not (tmp_path/'c').exists()
    other = tmp_path/'other.safetensors'                            # weights that do not match their config
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(ckpt), 'pt') as f: meta, sd = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = dict(meta, method_config=json.dumps(dict(json.loads(meta['method_config']), top_k=2)))
    save_file(sd, str(other), metadata=meta)
    r = _cli('test', '--ckpt', other, '--data', 'synthetic', '--root', root, '--out', tmp_path/'d')
    assert r.returncode == 1 and 'does not match' in r.stderr and not (tmp_path/'d').exists()
    junk = tmp_path/'junk.png'; junk.write_bytes(b'not a png')
    good = sorted((root/'ring'/'test').rglob('*.png'))[0]
    r = _cli('predict', '--ckpt', ckpt, good, junk, '--out', tmp_path/'e')
    assert r.returncode == 1 and 'junk.png' in r.stderr and not (tmp_path/'e').exists()

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _flat(sd): return torch.cat([v.flatten().double() for _, v in sorted(sd.items())])

def test_ddp_two_processes_equal_one_process_with_the_same_global_batch(data, tmp_path):
    "2 Gloo processes × batch 2 reach the weights of 1 process × batch 4 (and not those of 1 process × batch 2)."
    root, cfg = data
    args = ['train', '--data', 'synthetic', '--root', root, '--classes', 'woven', 'disc', *TINY, '--epochs', '1',
            '--seed', '0', '--model-config', cfg, '--device', 'cpu']
    for bs, out in ((4, 'one'), (2, 'half')):
        r = _cli(*args, '--batch-size', bs, '--out', tmp_path/out); assert r.returncode == 0, r.stderr
    ddp = subprocess.run(['torchrun', '--nproc_per_node', '2', '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
                          '-m', 'dlvp_clip.cli', *map(str, args), '--batch-size', '4', '--out', str(tmp_path/'two')],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    w = {k: _flat(load_file(str(tmp_path/k/'checkpoints'/'epoch_000.safetensors'))) for k in ('one', 'two', 'half')}
    assert (w['two'] - w['one']).abs().max() < 1e-4         # measured: 3.6e-6 (summation order)
    assert (w['half'] - w['one']).abs().max() > 1e-3         # a different batch split is clearly distinguishable
    assert json.loads((tmp_path/'two'/'config.json').read_text())['world_size'] == 2

def test_a_run_from_before_methods_had_names_resumes_and_its_evaluation_is_kept(data, tmp_path):
    "config.json/run.json written before the method registry lack `method` and `train.optimizer`: they mean DLVP-CLIP and Adam."
    root, cfg = data
    args = ['train', '--data', 'synthetic', '--root', root, '--classes', 'woven', '--out', tmp_path/'r', *TINY, '--model-config', cfg, '--batch-size', '4']
    assert _cli(*args, '--epochs', '1').returncode == 0
    conf = json.loads((tmp_path/'r'/'config.json').read_text()); del conf['method'], conf['train']['optimizer']
    (tmp_path/'r'/'config.json').write_text(json.dumps(conf))
    r = _cli(*args, '--epochs', '2', '--resume')
    assert r.returncode == 0 and 'trained to epoch 2' in r.stdout, r.stderr[-2000:]
    ck = tmp_path/'r'/'checkpoints'/'epoch_001.safetensors'
    test = ['test', '--ckpt', ck, '--data', 'synthetic', '--root', root, '--classes', 'ring', '--out', tmp_path/'e']
    assert _cli(*test).returncode == 0
    run = tmp_path/'e'/'synthetic'/'run.json'; info = json.loads(run.read_text()); del info['method']; run.write_text(json.dumps(info))
    r = _cli(*test)
    assert r.returncode == 0, r.stderr[-2000:]
