"""Faults of the command line (issue 19's CLI end, issue 18's switches): Ctrl-C, bad --out, full disk, busy folders,
dead loader workers, predict's names and folders, --set and released files checked before any backbone."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlvp_clip import cli
from dlvp_clip.core import DiskFullError, FolderBusyError, LoaderWorkerError, folder_lock
from dlvp_clip.synthetic import make_synthetic

ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
TINY = ['--backbone', 'DLVP-Tiny-14', '--pretrained', 'none', '--image-size', '56']

def _popen(*args):
    return subprocess.Popen([sys.executable, '-m', 'dlvp_clip.cli', *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)

def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'dlvp_clip.cli', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)

def _main(capsys, *args) -> tuple[int, str]:
    "`dlvp-clip ARGS` in this process: (exit code, stderr)."
    rc = cli.main([str(a) for a in args]); return rc, capsys.readouterr().err

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn')/'data'
    make_synthetic(root, categories=('ring',), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0)
    return root

def _photos(folder: Path, names, size=(20, 24)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names): Image.fromarray(np.full((*size, 3), 30 * i % 256, np.uint8)).save(folder/n, format='JPEG' if n.lower().endswith('jpg') else 'PNG')
    return folder

# --- exit codes ---------------------------------------------------------------------------------------------------------

def test_error_exit_gives_each_fault_its_code(tmp_path, capsys):
    for e, code in ((DiskFullError(tmp_path/'x'), 74), (FolderBusyError('busy'), 75), (LoaderWorkerError('died'), 71),
                    (KeyboardInterrupt(), 130), (ValueError('bad'), 1)):
        assert cli.error_exit('test', e) == code
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith('dlvp-clip test: '), err
    assert all(str(c) in cli.EPILOG for c in (71, 74, 75, 130))

def test_disk_full_and_dead_worker_end_the_command_with_their_codes(data, tmp_path, capsys, monkeypatch):
    "The library's DiskFullError / LoaderWorkerError raised inside `test` reach the user as one line and 74 / 71."
    from dlvp_clip import api
    for exc, code in ((DiskFullError(tmp_path/'eval'/'metrics.csv', free=0), 74), (LoaderWorkerError('a data-loading worker process died'), 71)):
        monkeypatch.setattr(api, 'evaluate_model', lambda *a, _e=exc, **k: (_ for _ in ()).throw(_e))
        rc, err = _main(capsys, 'test', '--method', 'winclip', *TINY, '--data', 'synthetic', '--root', data, '--out', tmp_path/'eval')
        assert rc == code and err.count('\n') == 1 and 'Traceback' not in err, err

def test_a_second_predict_into_a_busy_folder_is_refused_with_75(tmp_path):
    imgs = _photos(tmp_path/'in', ['a.png'])
    with folder_lock(tmp_path/'out', 'prediction'):                 # another predict holds the folder
        r = _cli('predict', imgs, '--method', 'winclip', *TINY, '--out', tmp_path/'out', '--workers', '0')
    assert r.returncode == 75 and 'is in use by another prediction' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]

# --- Ctrl-C -------------------------------------------------------------------------------------------------------------

def _interrupt(p: subprocess.Popen, started) -> tuple[str, str]:
    t0 = time.time()
    while not started() and p.poll() is None and time.time() - t0 < 120: time.sleep(0.02)
    assert p.poll() is None, p.communicate()[1][-2000:]
    p.send_signal(signal.SIGINT)
    return p.communicate(timeout=120)

def test_ctrl_c_during_test_keeps_the_results_and_the_same_command_continues(tmp_path):
    root = tmp_path/'data'
    make_synthetic(root, categories=('ring', 'disc'), size=56, n_train=0, n_good=12, n_per_defect=4, seed=0)
    args = ['test', '--method', 'winclip', *TINY, '--data', 'synthetic', '--root', root, '--out', tmp_path/'eval', '--batch-size', '1', '--workers', '0']
    p = _popen(*args)
    out, err = _interrupt(p, lambda: (tmp_path/'eval'/'synthetic'/'images.jsonl').exists())
    assert p.returncode == 130 and 'Traceback' not in err, err[-2000:]
    assert 'interrupted; the results so far are kept in' in err and 'run the same command to continue' in err
    assert not list((tmp_path/'eval').rglob('.*.tmp'))
    r = _cli(*args); assert r.returncode == 0, r.stderr[-2000:]

def test_ctrl_c_during_predict_writes_nothing_and_leaves_no_staging_folder(tmp_path):
    imgs = _photos(tmp_path/'in', [f'{i:03d}.png' for i in range(400)], size=(64, 64))
    p = _popen('predict', imgs, '--method', 'winclip', *TINY, '--out', tmp_path/'res', '--batch-size', '1', '--workers', '0')
    out, err = _interrupt(p, lambda: any(tmp_path.glob('.res.predict-*/*.npy')))
    assert p.returncode == 130 and 'Traceback' not in err, err[-2000:]
    assert 'interrupted; nothing was written to' in err
    assert not list(tmp_path.glob('.res.predict-*')) and not (tmp_path/'res').exists()

# --- --out --------------------------------------------------------------------------------------------------------------

COMMANDS = {'train': ['train', '--data', 'synthetic', '--root', 'R'], 'test': ['test', '--method', 'winclip'],
            'predict': ['predict', 'R', '--method', 'winclip'], 'compare': ['compare', '--smoke'], 'demo': ['demo'],
            'reproduce': ['reproduce', '--smoke'],
            'sweep': ['sweep', 'depth', '--train-data', 'synthetic', '--train-root', 'R', '--test-data', 'synthetic', '--test-root', 'R']}

@pytest.mark.parametrize('command', list(COMMANDS))
def test_an_out_that_is_a_file_or_inside_one_is_refused_before_any_work(command, tmp_path, capsys, monkeypatch):
    from dlvp_clip import api
    monkeypatch.setattr(api, 'load_backbone', lambda *a, **k: pytest.fail('work started before --out was checked'))
    f = tmp_path/'file'; f.write_text('x')
    for out in (f, f/'sub'):
        rc, err = _main(capsys, *COMMANDS[command], '--out', out)
        assert rc == 1 and err.count('\n') == 1 and str(f) in err and 'is a file' in err, err
    assert f.read_text() == 'x' and sorted(p.name for p in tmp_path.iterdir()) == ['file']

def test_data_scan_checks_its_out_file_first(data, tmp_path, capsys):
    f = tmp_path/'file'; f.write_text('x')
    rc, err = _main(capsys, 'data', 'scan', 'synthetic', data, '--out', f/'m.json')
    assert rc == 1 and 'is a file' in err, err
    rc, err = _main(capsys, 'data', 'scan', 'synthetic', data, '--out', tmp_path)
    assert rc == 1 and 'is a folder; give a file name' in err, err

@pytest.mark.skipif(os.geteuid() == 0, reason='root writes anywhere: permissions are not enforced for it')
@pytest.mark.parametrize('command', list(COMMANDS))
def test_an_unwritable_out_is_refused_before_any_work(command, tmp_path, capsys):
    ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o500)
    try: rc, err = _main(capsys, *COMMANDS[command], '--out', ro/'run')
    finally: ro.chmod(0o700)
    assert rc == 1 and 'is not writable' in err, err

def test_reproduce_smoke_out_file_is_one_line_without_traceback(tmp_path):
    f = tmp_path/'file'; f.write_text('x')
    r = _cli('reproduce', '--smoke', '--out', f)
    assert r.returncode == 1 and 'Traceback' not in r.stderr and r.stderr.strip().count('\n') == 0 and 'is a file' in r.stderr, r.stderr

# --- test: --keep-maps, data scan warnings ------------------------------------------------------------------------------

def test_keep_maps_takes_model_or_image():
    parse = lambda *a: cli._parser().parse_args(['test', '--out', 'x', *a]).keep_maps
    assert (parse(), parse('--keep-maps'), parse('--keep-maps', 'image'), parse('--keep-maps', 'model')) == (False, 'model', 'image', 'model')

def test_keep_maps_image_writes_maps_at_the_images_size(data, tmp_path, capsys):
    rc, err = _main(capsys, 'test', '--method', 'winclip', *TINY, '--data', 'synthetic', '--root', data, '--out', tmp_path/'e', '--keep-maps', 'image', '--workers', '0')
    assert rc == 0, err
    rows = [json.loads(l) for l in (tmp_path/'e'/'synthetic'/'images.jsonl').read_text().splitlines()]
    assert rows and all(r.get('image_map') and (tmp_path/'e'/'synthetic'/r['image_map']).is_file() for r in rows), rows[:2]

def test_data_scan_prints_each_warning_once(tmp_path):
    for p in ('widget/train/good/a.png', 'widget/test/good/b.png'): _photos((tmp_path/'r'/p).parent, [Path(p).name])
    (tmp_path/'r'/'junk').mkdir(); (tmp_path/'r'/'junk'/'t.txt').write_text('x')
    r = _cli('data', 'scan', 'folder', tmp_path/'r', '--out', tmp_path/'m.json')
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).count('ignored junk/') == 1 and 'UserWarning' not in r.stderr, r.stdout + r.stderr

# --- predict ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def model():
    import torch
    from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
    from dlvp_clip.testing import tiny_backbone
    bb = tiny_backbone(image_size=56); torch.manual_seed(0)
    return DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56))

def test_predict_names_differ_without_regard_to_case(model, tmp_path):
    from dlvp_clip.predict import predict_images
    imgs = _photos(tmp_path/'in', ['a.png', 'a.PNG', 'a.jpg', 'a_png.png'])
    said = []
    sc = predict_images(model, [imgs], tmp_path/'out', progress=False, log=said.append)
    overlays = sorted(p.name for p in (tmp_path/'out').glob('*_overlay.png'))
    assert len(overlays) == len(sc) == 4 and len({o.lower() for o in overlays}) == 4, overlays
    assert said[0].startswith('wrote 4 overlays')

def test_predict_never_reads_its_own_outputs(model, tmp_path):
    from dlvp_clip.predict import predict_images
    imgs = _photos(tmp_path/'in', ['a.png', 'b.png'])
    assert len(predict_images(model, [imgs], imgs/'res1', progress=False, log=lambda s: None)) == 2
    said = []
    assert len(predict_images(model, [imgs], imgs/'res2', progress=False, log=said.append)) == 2    # res1's overlays are not inputs
    assert any('not read: 4 file(s)' in s for s in said), said
    os.symlink(imgs, tmp_path/'link')                              # --out inside the input, reached under another name
    assert len(predict_images(model, [imgs], tmp_path/'link'/'res2', progress=False, log=lambda s: None)) == 2

def test_predict_output_folders_follow_the_umask(model, tmp_path):
    from dlvp_clip.predict import predict_images
    _photos(tmp_path/'in'/'sub', ['a.png']); _photos(tmp_path/'in'/'other', ['b.png'])
    old = os.umask(0o022)
    try: predict_images(model, [tmp_path/'in'], tmp_path/'new', progress=False, log=lambda s: None)
    finally: os.umask(old)
    assert oct((tmp_path/'new').stat().st_mode & 0o777) == oct(0o755)
    assert oct((tmp_path/'new'/'sub').stat().st_mode & 0o777) == oct(0o755)
    assert not [p for p in (tmp_path/'new').iterdir() if p.name.startswith('.')]

# --- issue 18 item 4: every switch on the command line, released files checked first ------------------------------------

def test_set_reaches_the_model_and_bad_fields_are_named(data, tmp_path, capsys, monkeypatch):
    from dlvp_clip import api
    class Reached(Exception): pass
    seen = {}
    def evaluate(model, *a, **k): seen['cfg'] = model.cfg; raise Reached
    monkeypatch.setattr(api, 'evaluate_model', evaluate)
    with pytest.raises(Reached):
        cli.main(['test', '--method', 'winclip', *TINY, '--data', 'synthetic', '--root', str(data), '--out', str(tmp_path/'e'), '--set', 'window_batch=7', '--set', 'scales=2'])
    assert seen['cfg'].window_batch == 7 and tuple(seen['cfg'].scales) == (2,)
    rc, err = _main(capsys, 'test', '--method', 'winclip', *TINY, '--data', 'synthetic', '--root', data, '--out', tmp_path/'e', '--set', 'nope=1')
    assert rc == 1 and "winclip has no option 'nope'" in err, err
    rc, err = _main(capsys, 'compare', '--smoke', '--out', tmp_path/'c', '--set', 'hsf=true')
    assert rc == 1 and 'METHOD:FIELD=VALUE' in err, err

def test_predict_with_a_training_free_method_and_set(tmp_path):
    imgs = _photos(tmp_path/'in', ['a.png', 'b.png'])
    r = _cli('predict', imgs, '--method', 'winclip', *TINY, '--set', 'scales=2', '--out', tmp_path/'res', '--workers', '0', '--json')
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads(r.stdout)['images']) == 2 and len(list((tmp_path/'res').glob('*_overlay.png'))) == 2

def test_bad_released_files_fail_before_any_backbone(data, tmp_path, capsys, monkeypatch):
    from dlvp_clip import api, compare
    sys.path.insert(0, str(Path(__file__).parent))
    from test_methods import _anomalyclip_file
    from dlvp_clip.testing import tiny_backbone
    monkeypatch.setattr(api, 'load_backbone', lambda *a, **k: pytest.fail('a backbone was built before the file was checked'))
    monkeypatch.setattr(compare, 'load_backbone', lambda *a, **k: pytest.fail('a backbone was built before the file was checked'))
    (tmp_path/'junk.pth').write_bytes(b'j' * 64)
    _anomalyclip_file(tmp_path/'epoch_15.pth', tiny_backbone(image_size=56).text_width)
    for args in (('test', '--data', 'synthetic', '--root', data), ('predict', data)):
        rc, err = _main(capsys, *args, '--method', 'adaclip', '--weights', tmp_path/'junk.pth', *TINY, '--out', tmp_path/'o')
        assert rc == 1 and 'is not an AdaCLIP checkpoint' in err and err.count('\n') == 1, err
        rc, err = _main(capsys, *args, '--method', 'adaclip', '--weights', tmp_path/'epoch_15.pth', *TINY, '--out', tmp_path/'o')
        assert rc == 1 and "this looks like AnomalyCLIP's released weights" in err, err
    rc, err = _main(capsys, 'predict', data, '--ckpt', tmp_path/'epoch_15.pth', '--out', tmp_path/'o')
    assert rc == 1 and 'use --method anomalyclip --weights' in err and 'truncated' not in err, err
    rc, err = _main(capsys, 'compare', '--smoke', '--methods', 'adaclip,dlvp', '--weights', f"adaclip={tmp_path/'junk.pth'}", '--out', tmp_path/'c')
    assert rc == 1 and 'is not an AdaCLIP checkpoint' in err and not (tmp_path/'c').exists(), err

def test_predict_disk_full_says_so_and_leaves_nothing(model, tmp_path, monkeypatch, capsys):
    import errno
    import dlvp_clip.predict as pred
    imgs = _photos(tmp_path/'in', ['a.png', 'b.png'])
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(pred.np, 'save', full)
    with pytest.raises(DiskFullError, match='the disk is full'):
        pred.predict_images(model, [imgs], tmp_path/'res', progress=False, log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in']          # no staging folder, no half output folder

def test_predict_dead_loader_worker_is_a_clear_error(model, tmp_path, monkeypatch):
    import dlvp_clip.predict as pred
    imgs = _photos(tmp_path/'in', ['a.png'])
    class Dead:
        def __iter__(self): return self
        def __next__(self): raise RuntimeError('DataLoader worker (pid(s) 4242) exited unexpectedly')
    monkeypatch.setattr(pred.torch.utils.data, 'DataLoader', lambda *a, **k: Dead())
    with pytest.raises(LoaderWorkerError, match='--workers 0'):
        pred.predict_images(model, [imgs], tmp_path/'res', progress=False, log=lambda s: None, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in']

def test_compare_set_reaches_each_methods_model(tmp_path, capsys, monkeypatch):
    from dlvp_clip import api, compare
    class Reached(Exception): pass
    seen = {}
    def run(*a, **k): seen.update(k); raise Reached
    monkeypatch.setattr(api, 'compare_methods', run)
    with pytest.raises(Reached):
        cli.main(['compare', '--smoke', '--methods', 'winclip,dlvp', '--set', 'winclip:scales=2', '--set', 'dlvp:smooth_sigma=2', '--out', str(tmp_path/'c')])
    assert seen['options'] == {'winclip': {'scales': (2,)}, 'dlvp': {'smooth_sigma': 2.0}}
    cfg = compare.CompareConfig(data_root=str(tmp_path), out=str(tmp_path/'c'), methods=('winclip',), backbone='DLVP-Tiny-14', image_size=56,
                                pretrained=None, options={'winclip': {'scales': (2,)}})
    model, how = compare._model_for('winclip', cfg, {}, lambda s: None)
    assert how == 'training-free' and model.cfg.scales == (2,)
    with pytest.raises(ValueError, match='--set names'): compare.CompareConfig(data_root='d', out='o', methods=('dlvp',), options={'winclip': {}}).validate()

def test_set_on_a_checkpoint_changes_its_evaluation_config(tmp_path):
    import torch
    from dlvp_clip import api
    from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
    from dlvp_clip.methods.registry import save_model
    from dlvp_clip.testing import tiny_backbone
    bb = tiny_backbone(image_size=56); torch.manual_seed(0)
    save_model(DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56)), tmp_path/'m.safetensors')
    m = api.load(tmp_path/'m.safetensors', **api.parse_options('dlvp', ['smooth_sigma=1.5']))
    assert m.cfg.smooth_sigma == 1.5 and api.load(tmp_path/'m.safetensors').cfg.smooth_sigma == 4.0
