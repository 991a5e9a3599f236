"""The `dlvp-clip` command as a user runs it: a real subprocess, exit codes and messages."""
import os, subprocess, sys
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
