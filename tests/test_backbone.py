"""Backbone loading paths that need monkeypatching or files: weights folder, hub unreachable, pickles refused."""
import time
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

def test_checkpoint_records_the_activation_and_loading_uses_it(tmp_path, capsys):
    "A checkpoint trained on QuickGELU is rebuilt with QuickGELU under `auto`, though the tiny model's own default is GELU."
    from dlvp_clip.api import load_checkpoint
    from dlvp_clip.cli import main
    from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
    from dlvp_clip.methods.registry import save_model
    bb = tiny_backbone(activation='quickgelu')
    save_model(DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=112)), tmp_path/'m.safetensors')
    said = []
    m = load_checkpoint(tmp_path/'m.safetensors', log=said.append)
    assert m.backbone.activation == 'quickgelu' and m.cfg.activation == 'quickgelu'
    assert said == [f'{B.TINY_CLIP}: quickgelu activation (recorded in the checkpoint)']
    with pytest.raises(ValueError, match='--activation gelu was asked for'):
        load_checkpoint(tmp_path/'m.safetensors', activation='gelu')
    assert main(['predict', str(tmp_path), '--ckpt', str(tmp_path/'m.safetensors'), '--out', str(tmp_path/'out'), '--activation', 'gelu']) == 1
    assert 'trained with the quickgelu activation' in capsys.readouterr().err
    assert not (tmp_path/'out').exists()

def test_auto_activation_reads_the_hugging_face_cache_folder(tmp_path):
    "The OpenAI weights found in the Hugging Face cache (no tag in the file name) are still recognised by their folder."
    f = tmp_path/'models--timm--vit_large_patch14_clip_336.openai'/'snapshots'/'abc'/'open_clip_model.safetensors'
    f.parent.mkdir(parents=True); f.write_bytes(b'')
    assert B.decide_activation('ViT-L-14-336', str(f))[0] == 'quickgelu'
