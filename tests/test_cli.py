"""The `dlvp-clip` command as a user runs it: a real subprocess, exit codes and messages."""
import os, subprocess
from pathlib import Path

def _run(*args, env=None):
    e = {**os.environ, 'HF_HUB_OFFLINE': '1', **(env or {})}
    return subprocess.run(['dlvp-clip', *args], capture_output=True, text=True, env=e, timeout=300)

def test_demo_offline_real_backbone_fails_fast_with_instructions(tmp_path):
    r = _run('demo', '--out', str(tmp_path/'demo'), '--backbone', 'ViT-B-16', '--pretrained', 'openai', env={'HF_HOME': str(tmp_path)})
    assert r.returncode == 1
    assert 'DLVP_CLIP_WEIGHTS_DIR' in r.stderr and 'vit_base_patch16_clip_224.openai' in r.stderr
    assert 'Traceback' not in r.stderr and not (tmp_path/'demo').exists()

def test_bad_flag_and_unknown_backbone():
    assert _run('demo', '--image-size', 'big').returncode == 2
    r = _run('demo', '--out', '/tmp/dlvp-never-written', '--backbone', 'ViT-Nope')
    assert r.returncode == 1 and 'Unknown open_clip model' in r.stderr
    assert not Path('/tmp/dlvp-never-written').exists()

def test_version():
    r = _run('--version')
    assert r.returncode == 0 and r.stdout.startswith('dlvp-clip ')

def test_predict_out_on_another_filesystem_than_the_temp_folder(tmp_path, monkeypatch):
    "Outputs are staged next to --out, so the final move is a rename even when the temp folder is elsewhere."
    import shutil, tempfile
    import numpy as np, torch
    from PIL import Image
    from dlvp_clip.predict import predict_images
    from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
    from dlvp_clip.testing import tiny_backbone
    shm = Path('/dev/shm')
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev: import pytest; pytest.skip('needs /dev/shm on another filesystem')
    other = Path(tempfile.mkdtemp(dir=shm)); monkeypatch.setattr(tempfile, 'tempdir', str(other))
    try:
        img = tmp_path/'a.png'; Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(img)
        bb = tiny_backbone(image_size=56); torch.manual_seed(0)
        sc = predict_images(DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56)), [img], tmp_path/'new'/'out', progress=False, log=lambda s: None)
        assert (tmp_path/'new'/'out'/sc[str(img)]['overlay']).is_file() and not list(other.iterdir())
    finally: shutil.rmtree(other)

def test_predict_streams_batch_by_batch(tmp_path, monkeypatch):
    "At most one batch of photos is decoded ahead of inference (not every input first)."
    import numpy as np, torch
    from PIL import Image
    import dlvp_clip.predict as cli
    from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
    from dlvp_clip.testing import tiny_backbone
    for i in range(5): Image.fromarray(np.full((30, 30, 3), 40 * i, np.uint8)).save(tmp_path/f'{i}.png')
    bb = tiny_backbone(image_size=56); torch.manual_seed(0); model = DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=56))
    reads, ahead = [], []
    monkeypatch.setattr(cli, 'read_image', lambda f, _r=cli.read_image: reads.append(f) or _r(f))
    monkeypatch.setattr(model, 'predict', lambda x, *a, _p=model.predict, **k: ahead.append(len(reads) - sum(ahead)) or _p(x, *a, **k))
    sc = cli.predict_images(model, [tmp_path], tmp_path/'out', batch_size=2, progress=False, log=lambda s: None)
    assert len(sc) == 5 and ahead == [2, 2, 1]
