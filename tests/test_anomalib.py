"""anomalib runs every registered method as a user runs it (Engine, Folder/MVTecAD datamodules, its metrics and
visualizer), trains the trainable ones, and its metrics on our maps equal ours."""
import logging, os, warnings

import pytest
import torch

try:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        import anomalib   # the optional extra; CI installs it with the dev extra
        from anomalib.data import Folder, MVTecAD
        from anomalib.engine import Engine
except ImportError:
    if os.environ.get('DLVP_REQUIRE_ANOMALIB') == '1': raise   # CI must not skip this silently
    pytest.skip('anomalib is not installed: pip install "dlvp-clip[anomalib]" (set DLVP_REQUIRE_ANOMALIB=1 to make this a failure)',
                allow_module_level=True)

from dlvp_clip.backbone import TINY_CLIP, load_backbone
from dlvp_clip.hub import load_pretrained
from dlvp_clip.integrations.anomalib import AnomalibMethod, our_metrics, write_folder_dataset
from dlvp_clip.methods.registry import get_method, list_methods, method_info
from dlvp_clip.testing import tiny_backbone

SIZE = 56

@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); logging.disable(logging.INFO)
        yield
    logging.disable(logging.NOTSET)

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp('anomalib')/'data', n_train=4, n_good=4, n_bad=4, size=SIZE, seed=0)

def _datamodule(root):
    return Folder(name='tiny', root=root, normal_dir='good', normal_test_dir='good_test', abnormal_dir='bad', mask_dir='masks',
                  train_batch_size=4, eval_batch_size=8, num_workers=0, val_split_mode='same_as_test')

def _engine(out, **kw):
    return Engine(default_root_dir=out, logger=False, accelerator='cpu', devices=1, enable_progress_bar=False, enable_model_summary=False, **kw)

def _method(name, seed=0):
    bb = load_backbone(TINY_CLIP, pretrained=None, image_size=SIZE, activation=method_info(name).activation, log=lambda s: None)
    torch.manual_seed(seed)
    return get_method(name, bb)

def _check_equal_to_ours(res, method, root):
    samples = sorted([*(root/'good_test').glob('*.png'), *(root/'bad').glob('*.png')])
    ours = our_metrics(method, samples, [root/'masks'/p.name if p.parent.name == 'bad' else None for p in samples])
    for theirs, mine in (('image_AUROC', 'image_auroc'), ('image_F1Max', 'image_f1max'), ('pixel_AUROC', 'pixel_auroc'), ('pixel_F1Max', 'pixel_f1max')):
        assert res[theirs] == pytest.approx(ours[mine], abs=1e-5), (theirs, res[theirs], ours[mine])
    assert res['pixel_AUPRO'] == pytest.approx(ours['pixel_aupro'], abs=1e-4)    # measured within 6e-7; anomalib sums in float32

@pytest.mark.parametrize('name', list_methods())
def test_engine_test_runs_every_method_and_its_metrics_equal_ours(name, folder, tmp_path):
    model = AnomalibMethod(_method(name))
    res = _engine(tmp_path/'out').test(model, datamodule=_datamodule(folder), verbose=False)[0]
    _check_equal_to_ours(res, model.method, folder)
    drawn = sorted(p.name for p in (tmp_path/'out').rglob('images/bad/*.png'))
    assert drawn == sorted(p.name for p in (folder/'bad').glob('*.png'))          # anomalib's visualizer drew our maps

@pytest.mark.parametrize('name', [n for n in list_methods() if not method_info(n).training_free])
def test_engine_fit_trains_the_learned_parameters_only(name, folder, tmp_path):
    model = AnomalibMethod(_method(name))
    before = {k: v.clone() for k, v in model.method.state_dict().items()}
    _engine(tmp_path/'fit', max_steps=2).fit(model, datamodule=_datamodule(folder))
    changed = {k for k, v in model.method.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and not any(k.startswith('backbone.') for k in changed), name
    ckpt = torch.load(next((tmp_path/'fit').rglob('*.ckpt')), map_location='cpu', weights_only=True)   # Lightning's checkpoint: nothing pickled
    assert ckpt['hyper_parameters']['method'] == name
    model.method.save_pretrained(tmp_path/'saved')                                 # what anomalib trained is shareable as ours
    again = AnomalibMethod(load_pretrained(tmp_path/'saved'), zero_shot=True)
    res = _engine(tmp_path/'test').test(again, datamodule=_datamodule(folder), verbose=False)[0]
    _check_equal_to_ours(res, model.method, folder)                                # the reloaded model scores as the trained one

def test_mvtec_datamodule_names_the_class_as_our_prompts_do(tmp_path):
    "MVTecAD's category 'metal_nut' (here our synthetic marble under that name) becomes 'metal nut'; the ID itself with raw_class_names."
    from dlvp_clip.synthetic import make_synthetic
    make_synthetic(tmp_path/'syn', categories=('marble',), size=SIZE, n_train=2, n_good=2, n_per_defect=1, seed=0)
    (tmp_path/'mvtec').mkdir(); (tmp_path/'syn'/'marble').rename(tmp_path/'mvtec'/'metal_nut')
    dm = lambda: MVTecAD(root=tmp_path/'mvtec', category='metal_nut', train_batch_size=4, eval_batch_size=8, num_workers=0, val_split_mode='same_as_test')
    for raw, word in ((False, 'metal nut'), (True, 'metal_nut')):
        bb = load_backbone(TINY_CLIP, pretrained=None, image_size=SIZE, log=lambda s: None)
        model = AnomalibMethod(get_method('winclip', bb, raw_class_names=raw))
        res = _engine(tmp_path/f'out{raw}').test(model, datamodule=dm(), verbose=False)[0]
        assert model.model.class_name == word and 0 <= res['pixel_AUROC'] <= 1

def test_bad_wrapping_is_refused():
    with pytest.raises(TypeError, match='registered dlvp-clip method'): AnomalibMethod(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match='nothing to train'): AnomalibMethod(_method('winclip'), zero_shot=False)
    with pytest.raises(ValueError, match=f'{SIZE} px'): AnomalibMethod(_method('winclip')).configure_pre_processor((224, 224))

def test_without_anomalib_the_import_says_how_to_install_it():
    import subprocess, sys
    code = "import sys; sys.modules['anomalib'] = None\ntry: import dlvp_clip.integrations.anomalib\nexcept ImportError as e: print(e)"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert 'pip install "dlvp-clip[anomalib]"' in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, '-c', "import sys; sys.modules['anomalib'] = None\nimport dlvp_clip.hub, dlvp_clip.methods.dlvp; print('ok')"],
                       capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == 'ok', r.stderr                          # the rest of the library never needs it
