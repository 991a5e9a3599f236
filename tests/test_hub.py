"""Shareable checkpoints as a user shares them: a trained and evaluated model saved with its card, loaded back bit for bit."""
import json, time

import pytest
import torch
from safetensors.torch import save_file

from dlvp_clip.backbone import TINY_CLIP, load_backbone
from dlvp_clip.hub import load_pretrained, read_pretrained_config, save_pretrained
from dlvp_clip.methods.registry import get_method, list_methods, method_info
from dlvp_clip.testing import synth_batch, tiny_backbone

def _same_predictions(a, b, size=56):
    x, _, _ = synth_batch(3, size=size, seed=5)
    (ma, sa), (mb, sb) = a.predict(x, 'object', score='log_odds'), b.predict(x, 'object', score='log_odds')
    return torch.equal(ma, mb) and torch.equal(sa, sb)

@pytest.mark.parametrize('method', ['winclip', 'anomalyclip', 'adaclip', 'dlvp'])
def test_every_method_round_trips_bit_identically(method, tmp_path):
    bb = load_backbone(TINY_CLIP, pretrained=None, image_size=56, init_seed=3, activation=method_info(method).activation, log=lambda s: None)
    torch.manual_seed(1)
    m = get_method(method, bb)
    for p in m.trainable_parameters(): p.data.add_(torch.randn_like(p) * 0.01)   # weights no fresh build has
    m.save_pretrained(tmp_path/'m')
    loaded = load_pretrained(tmp_path/'m')
    assert loaded.name == method and loaded.backbone.weights == 'random:seed=3'
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in m.state_dict().items())
    assert _same_predictions(m, loaded)

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "DLVP-CLIP trained one step on two synthetic classes and evaluated on a third: (model, run folder, eval folder)."
    from dlvp_clip.dataset import AnomalyDataset
    from dlvp_clip.evaluate import evaluate
    from dlvp_clip.readers import scan_dataset
    from dlvp_clip.synthetic import make_synthetic
    from dlvp_clip.train import TrainConfig, train
    d = tmp_path_factory.mktemp('hub')
    m = scan_dataset('synthetic', make_synthetic(d/'data', categories=('woven', 'disc', 'ring'), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0))
    bb = tiny_backbone(image_size=56); torch.manual_seed(0)
    model = get_method('dlvp', bb, prompt_depth=3)
    ds = AnomalyDataset(m, image_size=56, classes=['woven', 'disc'], mean=bb.mean, std=bb.std, seed=0)
    train(model, ds, TrainConfig(epochs=1, batch_size=4, max_steps=1, seed=0), d/'train', progress=False)
    evaluate(model, m, d/'eval', classes=['ring'], progress=False)
    return model, d/'train', d/'eval'/'synthetic'

def test_card_names_training_recipe_metrics_and_protocol(trained, tmp_path):
    model, run, ev = trained
    save_pretrained(model, tmp_path/'p', run=run, evaluations=[ev])
    cfg, card = read_pretrained_config(tmp_path/'p'), (tmp_path/'p'/'README.md').read_text()
    assert cfg['training']['dataset']['name'] == 'synthetic' and cfg['training']['recipe']['lr'] == 1.5e-4 and cfg['training']['epochs_trained'] == 1 and 'epoch_000.safetensors' in card
    measured = cfg['evaluations'][0]
    import pandas as pd
    mean = pd.read_csv(ev/'metrics.csv').set_index('cls').loc['mean']
    assert measured['mean']['pixel_auroc'] == round(float(mean['pixel_auroc']), 2)       # the card reports what evaluate wrote
    for words in ('dlvp', TINY_CLIP, 'random weights', 'measures nothing', 'synthetic', 'woven', '"lr": 0.00015',
                  f"{measured['mean']['pixel_auroc']:.1f}", 'σ = 4.0', 'log-odds', 'Intended use', 'Limits', cfg['backbone']['activation']):
        assert words in card, words
    assert _same_predictions(model, load_pretrained(tmp_path/'p'))
    save_pretrained(model, tmp_path/'q', evaluations=ev.parent)                   # evaluate's out_dir: every dataset in it
    assert read_pretrained_config(tmp_path/'q')['evaluations'] == cfg['evaluations']

def test_foreign_runs_and_metrics_are_refused(trained, tmp_path):
    model, run, ev = trained
    other = get_method('dlvp', tiny_backbone(image_size=56), prompt_depth=3)      # same config, untrained weights
    with pytest.raises(ValueError, match='other weights'): save_pretrained(other, tmp_path/'a', evaluations=[ev])
    with pytest.raises(ValueError, match='not .winclip'): save_pretrained(get_method('winclip', tiny_backbone(image_size=56)), tmp_path/'b', run=run)
    with pytest.raises(ValueError, match='none of the checkpoints'): save_pretrained(other, tmp_path/'c', run=run)   # same config, not its weights
    assert not any((tmp_path/n).exists() for n in 'abc')           # nothing half-written

def test_weights_file_backbone_is_found_by_name_and_hash(tmp_path, monkeypatch):
    f = tmp_path/'w'/'tiny-weights.safetensors'; f.parent.mkdir()
    save_file(tiny_backbone(image_size=56, seed=7).clip.state_dict(), str(f))
    bb = load_backbone(TINY_CLIP, pretrained=str(f), image_size=56, log=lambda s: None)
    torch.manual_seed(0)
    m = get_method('anomalyclip', bb); m.save_pretrained(tmp_path/'p')
    monkeypatch.delenv('DLVP_CLIP_WEIGHTS_DIR', raising=False)
    with pytest.raises(FileNotFoundError, match='tiny-weights.safetensors'): load_pretrained(tmp_path/'p')
    monkeypatch.setenv('DLVP_CLIP_WEIGHTS_DIR', str(f.parent))
    assert _same_predictions(m, load_pretrained(tmp_path/'p'))
    save_file(tiny_backbone(image_size=56, seed=8).clip.state_dict(), str(f))       # other bytes under the same name
    with pytest.raises(ValueError, match='not the weights file'): load_pretrained(tmp_path/'p')

def test_damaged_folders_and_hub_ids_fail_fast_and_clearly(tmp_path):
    m = get_method('winclip', tiny_backbone(image_size=56)); m.save_pretrained(tmp_path/'p')
    with pytest.raises(FileExistsError, match='overwrite=True'): m.save_pretrained(tmp_path/'p')
    t = time.time()
    with pytest.raises(ConnectionError, match='not a local folder'): load_pretrained('dlvp-clip/no-such-model')   # HF_HUB_OFFLINE=1 (conftest)
    assert time.time() - t < 10
    with pytest.raises(ValueError, match='is a file'): load_pretrained(tmp_path/'p'/'model.safetensors')
    with pytest.raises(FileNotFoundError, match='neither a folder'): load_pretrained(tmp_path/'nothing'/'here')
    c = json.loads((tmp_path/'p'/'config.json').read_text()); c['format'] = 'other/9'
    (tmp_path/'p'/'config.json').write_text(json.dumps(c))
    with pytest.raises(ValueError, match='format'): load_pretrained(tmp_path/'p')

def test_hub_id_loads_from_the_hugging_face_cache_offline(tmp_path):
    "A model downloaded once (here: laid out as huggingface_hub caches it) loads by its id with HF_HUB_OFFLINE=1."
    torch.manual_seed(0)
    m = get_method('anomalyclip', tiny_backbone(image_size=56))
    commit = 'a' * 40
    repo = tmp_path/'cache'/'models--someone--tiny-anomalyclip'
    m.save_pretrained(repo/'snapshots'/commit)
    (repo/'refs').mkdir(); (repo/'refs'/'main').write_text(commit)
    t = time.time()
    loaded = load_pretrained('someone/tiny-anomalyclip', cache_dir=str(tmp_path/'cache'))
    assert time.time() - t < 30 and _same_predictions(m, loaded)

def test_push_to_hub_uploads_exactly_the_pretrained_folder(tmp_path, monkeypatch):
    import huggingface_hub
    seen = {}
    monkeypatch.setenv('HF_HUB_OFFLINE', '0')
    monkeypatch.setattr(huggingface_hub, 'create_repo', lambda repo_id, **kw: seen.update(repo=repo_id, private=kw.get('private')))
    def upload(repo_id, folder_path, **kw):
        seen['files'] = sorted(p.name for p in folder_path.iterdir())
        seen['loads'] = _same_predictions(m, load_pretrained(folder_path))
        return f'https://huggingface.co/{repo_id}/commit/0'
    monkeypatch.setattr(huggingface_hub, 'upload_folder', upload)
    m = get_method('winclip', tiny_backbone(image_size=56))
    assert m.push_to_hub('me/tiny-winclip') == 'https://huggingface.co/me/tiny-winclip/commit/0'
    assert seen == dict(repo='me/tiny-winclip', private=True, files=['README.md', 'config.json', 'model.safetensors'], loads=True)
    with pytest.raises(ValueError, match='owner/name'): m.push_to_hub('not a repo id')

def test_a_model_tapped_at_other_blocks_round_trips(tmp_path):
    "`get_method(..., taps=...)` taps the same network elsewhere (`with_taps`); the folder rebuilds exactly that."
    torch.manual_seed(0)
    m = get_method('anomalyclip', tiny_backbone(image_size=56), taps=(12,))
    m.save_pretrained(tmp_path/'p')
    loaded = load_pretrained(tmp_path/'p')
    assert loaded.backbone.taps == (12,) and _same_predictions(m, loaded)
