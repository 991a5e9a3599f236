"""Backbone loading paths that need monkeypatching or files: weights folder, hub unreachable, pickles refused."""
import pickle, time
import pytest
import torch
from safetensors.torch import save_file

from dlvp_clip import backbone as B
from dlvp_clip.testing import tiny_backbone

def test_weights_dir_is_found_before_the_hub(tmp_path, monkeypatch):
    "A file named {model}-{tag}.safetensors in $DLVP_CLIP_WEIGHTS_DIR is used for that tag."
    monkeypatch.setenv(B.WEIGHTS_ENV, str(tmp_path))
    src = B.load_clip(B.TINY_CLIP, None, image_size=112)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, tmp_path/'ViT-B-16-openai.safetensors')
    assert B.resolve_pretrained('ViT-B-16', 'openai', cache_dir=str(tmp_path)) == str(tmp_path/'ViT-B-16-openai.safetensors')

def test_unreachable_hub_fails_fast_even_when_not_marked_offline(tmp_path, monkeypatch):
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(B, '_hub_reachable', lambda timeout=3.0: False)
    t = time.time()
    with pytest.raises(FileNotFoundError, match='cannot be reached'):
        B.load_clip('ViT-B-16', 'openai', image_size=224, cache_dir=str(tmp_path))
    assert time.time() - t < 5

def test_hub_probe_is_bounded(monkeypatch):
    "The reachability probe returns within its timeout even when connecting hangs (no traffic is sent)."
    def _hang(*a, **k): time.sleep(10)
    monkeypatch.setattr(B.socket, 'create_connection', _hang)
    t = time.time(); assert B._hub_reachable(timeout=1.0) is False; assert time.time() - t < 3

class _Evil:
    def __reduce__(self): return (print, ('pickled code ran',))

def test_pickled_objects_are_refused(tmp_path):
    sd = B.load_clip(B.TINY_CLIP, None, image_size=112).state_dict()
    torch.save({'state_dict': sd, 'evil': _Evil()}, tmp_path/'evil.pt')
    with pytest.raises(ValueError, match='weights_only'):
        B.load_clip(B.TINY_CLIP, str(tmp_path/'evil.pt'), image_size=112)

def test_wrong_architecture_checkpoint_names_the_file(tmp_path):
    sd = B.load_clip(B.TINY_CLIP, None, image_size=112).state_dict()
    sd.pop('visual.proj')
    torch.save(sd, tmp_path/'partial.pt')
    with pytest.raises(ValueError, match='partial.pt'):
        B.load_clip(B.TINY_CLIP, str(tmp_path/'partial.pt'), image_size=112)

def test_batch_of_one_and_odd_grids():
    bb = tiny_backbone(image_size=98)   # 7×7, odd like the paper's 37×37
    out = bb.encode_image(torch.randn(1, 3, 98, 98), attn=True)
    assert out.attn.shape == (1, 49) and out.taps[-1].shape == (1, 49, 64)
