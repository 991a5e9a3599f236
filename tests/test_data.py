"""Dataset readers and validation: each check on a generated tree that breaks it (datasets.md §3)."""
import json, warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlvp_clip.imageio import DatasetError
from dlvp_clip.manifest import from_meta, load_manifest, to_meta
from dlvp_clip.readers import scan_dataset
from dlvp_clip.testing import write_png

def _mvtec(root: Path, cls='bottle', defect='broken', n_bad=2, size=(8, 8)):
    write_png(root/cls/'train/good/000.png', size)
    write_png(root/cls/'test/good/000.png', size)
    for i in range(n_bad):
        write_png(root/cls/f'test/{defect}/{i:03d}.png', size)
        write_png(root/cls/f'ground_truth/{defect}/{i:03d}_mask.png', size, mask=True)
    return root

def _scan(*a, **k):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        m = scan_dataset(*a, **k)
    return m, [str(x.message) for x in w]

def test_pairs_by_stem_not_by_sorted_index(tmp_path):
    r = _mvtec(tmp_path, n_bad=0)
    write_png(r/'bottle/test/broken/001.png', (8, 8)); write_png(r/'bottle/test/broken/002.png', (8, 8))
    write_png(r/'bottle/ground_truth/broken/002_mask.png', (8, 8), mask=True)
    write_png(r/'bottle/ground_truth/broken/001_mask.png', (8, 8), mask=True, value=7)
    (r/'bottle/ground_truth/broken/.DS_Store').write_text('x'); (r/'bottle/ground_truth/broken/meta.json').write_text('{}')
    m, _ = _scan('mvtec', r)
    pairs = {x.image.split('/')[-1]: x.mask.split('/')[-1] for x in m.records if x.mask}
    assert pairs == {'001.png': '001_mask.png', '002.png': '002_mask.png'}

def test_unmatched_anomalous_image_is_an_error_naming_it(tmp_path):
    r = _mvtec(tmp_path)
    write_png(r/'bottle/test/broken/005.png', (8, 8))
    with pytest.raises(DatasetError, match='anomalous image without a mask: bottle/test/broken/005.png'):
        scan_dataset('mvtec', r)

def test_orphan_mask_is_a_warning(tmp_path):
    r = _mvtec(tmp_path)
    write_png(r/'bottle/ground_truth/broken/099_mask.png', (8, 8), mask=True)
    _, w = _scan('mvtec', r)
    assert any('orphan mask' in x and '099_mask.png' in x for x in w)

def test_mask_size_mismatch_is_an_error(tmp_path):
    r = _mvtec(tmp_path)
    write_png(r/'bottle/ground_truth/broken/000_mask.png', (8, 6), mask=True)
    with pytest.raises(DatasetError, match='000_mask.png is 8×6 but its image .* is 8×8'):
        scan_dataset('mvtec', r)

def test_rgb_masks_are_single_channel_and_empty_masks_warn(tmp_path):
    r = _mvtec(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(r/'bottle/ground_truth/broken/000_mask.png')
    m, w = _scan('mvtec', r)
    assert any('empty mask' in x for x in w) and len(m.records) == 4

def test_corrupt_image_is_an_error_and_skip_bad_lists_it(tmp_path):
    r = _mvtec(tmp_path)
    p = r/'bottle/test/good/000.png'; p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(DatasetError, match='cannot decode .*000.png'):
        scan_dataset('mvtec', r)
    m, _ = _scan('mvtec', r, skip_bad=True)
    assert any('000.png' in s for s in m.report['skipped'])
    assert 'bottle/test/good/000.png' not in {x.image for x in m.records}

def test_grayscale_palette_rgba_and_16bit_decode(tmp_path):
    r = _mvtec(tmp_path, n_bad=0)
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(r/'bottle/test/good/001.png')
    Image.fromarray(np.full((8, 8, 4), 9, np.uint8), 'RGBA').save(r/'bottle/test/good/002.png')
    Image.fromarray(np.full((8, 8), 3, np.uint8)).convert('P').save(r/'bottle/test/good/003.png')
    m, _ = _scan('mvtec', r)
    from dlvp_clip.imageio import read_image
    a = read_image(r/'bottle/test/good/001.png')
    assert a.shape == (8, 8, 3) and a[0, 0, 0] == round(40000 * 255 / 65535)
    assert len(m.select()) == 4

def test_upper_case_extensions_and_dagm_test_folders(tmp_path):
    for i in range(3): write_png(tmp_path/f'Class1/Test/{i:04d}.PNG', (8, 8))
    write_png(tmp_path/'Class1/Test/Label/0001_label.PNG', (8, 8), mask=True)
    write_png(tmp_path/'Class1/Train/0009.PNG', (8, 8))
    m, w = _scan('dagm', tmp_path)
    assert [x.label for x in m.records] == [0, 1, 0] and m.records[1].image == 'Class1/Test/0001.PNG'
    assert all('/Test/' in x.image for x in m.records)

def test_zero_masks_for_normals_are_h_by_w(tmp_path):
    from dlvp_clip.dataset import AnomalyDataset
    r = _mvtec(tmp_path, size=(6, 10))
    m, _ = _scan('mvtec', r)
    ds = AnomalyDataset(m, image_size=12)
    normal = next(x for x in m.select() if x.label == 0)
    img, mask = ds.load_record(normal)
    assert img.shape == (6, 10, 3) and mask.shape == (6, 10) and not mask.any()

def test_ksdd2_labels_come_from_gt_and_every_image_needs_one(tmp_path):
    for i, pos in enumerate([False, True]):
        write_png(tmp_path/f'test/{i}.png', (12, 4)); write_png(tmp_path/f'test/{i}_GT.png', (12, 4), mask=True, empty=not pos)
    m, _ = _scan('ksdd2', tmp_path)
    assert [(x.label, x.mask is not None) for x in m.records] == [(0, False), (1, True)]
    write_png(tmp_path/'test/7.png', (12, 4))
    with pytest.raises(DatasetError, match='without its _GT.png mask: test/7.png'):
        scan_dataset('ksdd2', tmp_path)

def test_btad_ok_folders_and_bmp_masks(tmp_path):
    write_png(tmp_path/'03/train/ok/0000.bmp', (6, 8)); write_png(tmp_path/'03/test/ok/0000.bmp', (6, 8))
    write_png(tmp_path/'03/test/ko/0001.bmp', (6, 8)); write_png(tmp_path/'03/ground_truth/ko/0001.bmp', (6, 8), mask=True)
    m, _ = _scan('btad', tmp_path)
    assert m.counts() == {'03': dict(normal=1, abnormal=1, masks=1)}

def test_headct_csv(tmp_path):
    d = tmp_path/'head_ct'
    for i in range(4): write_png(d/'head_ct'/f'{i:03d}.png', (8, 8))
    (d/'labels.csv').write_text('id, hemorrhage\n0,0\n1,1\n2,0\n3,1\n')
    m, _ = _scan('headct', tmp_path)
    assert [x.label for x in m.records] == [0, 1, 0, 1] and all(x.mask is None for x in m.records)

def test_brainmri_no_is_normal_and_br35h_excludes_pred(tmp_path):
    for sub, n in (('yes', 3), ('no', 2), ('pred', 2)):
        for i in range(n): write_png(tmp_path/'Br35H'/sub/f'{sub}{i}.jpg', (8, 8))
    m, w = _scan('br35h', tmp_path)
    assert (sum(x.label == 0 for x in m.records), sum(x.label for x in m.records)) == (2, 3)
    assert any('pred' in x and 'excluded' in x for x in w)
    m, _ = _scan('brainmri', tmp_path/'Br35H')
    assert {x.defect for x in m.records if x.label == 0} == {'good'}

def test_isic_official_pairs_segmentation_masks(tmp_path):
    for i in (1, 2):
        write_png(tmp_path/f'ISBI2016_ISIC_Part1_Test_Data/ISIC_000000{i}.jpg', (8, 8))
        write_png(tmp_path/f'ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_000000{i}_Segmentation.png', (8, 8), mask=True)
    m, _ = _scan('isic', tmp_path)
    assert [x.mask.endswith('_Segmentation.png') for x in m.records] == [True, True]

def test_kvasir_jpeg_masks_use_the_128_threshold_and_100_warns(tmp_path):
    for i in range(100):
        write_png(tmp_path/f'images/{i}.jpg', (8, 8)); write_png(tmp_path/f'masks/{i}.jpg', (8, 8), mask=True)
    m, w = _scan('kvasir', tmp_path)
    assert any('PraNet' in x for x in w)
    from dlvp_clip.dataset import AnomalyDataset
    assert AnomalyDataset(m, image_size=8).mask_rule == 'half'

def test_resc_bmad_and_mvfa(tmp_path):
    write_png(tmp_path/'Retina_RESC/test/Ungood/img/a.png', (8, 8)); write_png(tmp_path/'Retina_RESC/test/Ungood/label/a.png', (8, 8), mask=True)
    m, _ = _scan('resc', tmp_path)
    assert m.layout.startswith('resc (BMAD') and m.records[0].mask.endswith('label/a.png')

def test_wrong_layout_error_shows_the_expected_tree(tmp_path):
    write_png(tmp_path/'random/thing.png', (8, 8))
    with pytest.raises(DatasetError, match=r'does not look like MVTec-AD\. Expected:\n  <root>/<class>/'):
        scan_dataset('mvtec', tmp_path)

def test_meta_json_roundtrip_from_a_scan(tmp_path):
    r = _mvtec(tmp_path)
    m, _ = _scan('mvtec', r)
    meta = json.loads(json.dumps(to_meta(m)))
    assert from_meta(meta, 'mvtec', r).records == m.records

def test_cli_data_scan_writes_manifest_and_table(tmp_path, capsys):
    from dlvp_clip.cli import main
    r = _mvtec(tmp_path/'mv')
    out = tmp_path/'m.json'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert main(['data', 'scan', 'mvtec', str(r), '--out', str(out), '--meta-json', str(tmp_path/'meta.json')]) == 0
    txt = capsys.readouterr().out
    assert 'bottle' in txt and 'MISMATCH' in txt
    assert load_manifest(out).counts()['bottle']['abnormal'] == 2 and (tmp_path/'meta.json').exists()

def test_specs_in_data_manifests_are_current(root, tmp_path):
    from dlvp_clip.manifest import write_specs
    for p in write_specs(tmp_path):
        assert (root/'data_manifests'/p.name).read_text() == p.read_text(), f"regenerate data_manifests/{p.name} with write_specs"

# --- issue 11: data a user had never shown the project ---

def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return f(*a, **k)

def test_own_class_names_are_the_folder_dataset_with_its_title(tmp_path, capsys):
    from dlvp_clip.cli import main
    r = _mvtec(tmp_path/'parts', cls='widget')
    with pytest.raises(DatasetError, match="use the dataset name 'folder'"): scan_dataset('mvtec', r)
    m, _ = _scan('folder', r, title='Acme parts')
    assert m.classes() == ['widget'] and m.spec.title == 'Acme parts' and m.counts()['widget'] == dict(normal=1, abnormal=2, masks=2)
    assert _scan('folder', r)[0].spec.title == 'parts'                       # default: the root folder's name
    with pytest.raises(ValueError, match="--title names your own data"): scan_dataset('synthetic', r, title='x')
    out = tmp_path/'m.json'
    assert _quiet(main, ['data', 'scan', 'folder', str(r), '--title', 'Acme parts', '--out', str(out)]) == 0
    assert capsys.readouterr().out.startswith('Acme parts:') and load_manifest(out).spec.title == 'Acme parts'
    r2 = _mvtec(tmp_path/'nuts', cls='nut')
    for x in (r, r2): assert _quiet(main, ['data', 'scan', 'folder', str(x)]) == 0   # default manifests of two folders do not collide
    assert [load_manifest(tmp_path/f'folder-{n}.dlvp-manifest.json').classes() for n in ('parts', 'nuts')] == [['widget'], ['nut']]

def test_folder_dataset_with_explicit_folders(tmp_path):
    from dlvp_clip.readers import FolderLayout
    for i in range(2): write_png(tmp_path/f'ok/{i}.png', (8, 8)); write_png(tmp_path/f'bad/{i}.jpg', (8, 8))
    for i in range(2): write_png(tmp_path/f'gt/{i}_mask.png', (8, 8), mask=True)
    m, _ = _scan('folder', tmp_path, layout=FolderLayout('ok', 'bad', 'gt', 'bolt'))
    assert [(x.cls, x.defect, x.label, x.mask) for x in m.records] == [
        ('bolt', 'good', 0, None), ('bolt', 'good', 0, None), ('bolt', 'bad', 1, 'gt/0_mask.png'), ('bolt', 'bad', 1, 'gt/1_mask.png')]
    with pytest.raises(DatasetError, match='--abnormal-dir and --mask-dir together'): scan_dataset('folder', tmp_path, layout=FolderLayout('ok', 'bad'))
    with pytest.raises(DatasetError, match='outside the root'): scan_dataset('folder', tmp_path/'ok', layout=FolderLayout(abnormal='../bad', masks='../gt'))
    with pytest.raises(ValueError, match="for the dataset 'folder'"): scan_dataset('mvtec', tmp_path, layout=FolderLayout('ok'))

def test_train_on_a_meta_json_and_test_shows_the_folder_title(tmp_path, capsys):
    from dlvp_clip.cli import main
    from dlvp_clip.synthetic import make_synthetic
    root = make_synthetic(tmp_path/'mine', categories=('woven', 'disc'), size=56, n_train=0, n_good=2, n_per_defect=1, seed=0)
    (root/'woven').rename(root/'cloth'); (root/'disc').rename(root/'washer')
    man, meta = tmp_path/'m.json', root/'meta.json'
    assert _quiet(main, ['data', 'scan', 'folder', str(root), '--title', 'My parts', '--out', str(man), '--meta-json', str(meta)]) == 0
    tiny = ['--backbone', 'DLVP-Tiny-14', '--image-size', '56', '--batch-size', '4', '--device', 'cpu']
    assert _quiet(main, ['train', '--meta-json', str(meta), '--classes', 'cloth', '--out', str(tmp_path/'run'), '--epochs', '1', *tiny]) == 0
    ckpt = next((tmp_path/'run'/'checkpoints').glob('*.safetensors'))
    assert _quiet(main, ['test', '--ckpt', str(ckpt), '--manifest', str(man), '--classes', 'washer', '--out', str(tmp_path/'eval'),
                         '--batch-size', '4', '--device', 'cpu']) == 0
    assert (tmp_path/'eval'/'folder'/'metrics.md').read_text().startswith('# My parts\n')

def test_meta_json_is_read_as_or_in_the_root_and_checked(tmp_path):
    from dlvp_clip.catalog import open_data as get_manifest
    from dlvp_clip.readers import read_meta_json
    r = _mvtec(tmp_path/'mv')
    meta = to_meta(_scan('mvtec', r)[0]); (r/'meta.json').write_text(json.dumps(meta))
    m, w = _scan('mvtec', r)                                                    # layout recognised: the meta.json is named, not used
    assert m.layout.startswith('mvtec') and any('meta.json in the root was not read' in x for x in w)
    assert _scan('mvtec', r/'meta.json')[0].records == m.records                 # the file's path as the root
    assert _quiet(get_manifest, 'mvtec', None, str(r/'meta.json')).records == m.records   # train/test --meta-json FILE
    (r/'bottle/test').rename(r/'bottle/tst')                                    # no layout left: the meta.json is the dataset
    with pytest.raises(DatasetError, match='file not found: .*bottle/test/'): scan_dataset('mvtec', r)   # and it is checked
    (r/'meta.json').write_text(json.dumps(meta).replace('bottle/test/', 'bottle/tst/'))
    m2, _ = _scan('mvtec', r)
    assert m2.layout == 'AdaCLIP/AnomalyCLIP meta.json (meta.json)' and m2.counts() == m.counts()
    (r/'junk.json').write_text(json.dumps({'model': {}}))
    with pytest.raises(DatasetError, match='neither a dlvp-clip manifest nor an AdaCLIP'): read_meta_json(r/'junk.json')

def test_cli_meta_json_flag_feeds_the_manifest_route():
    from dlvp_clip.cli import _parser
    for cmd in ('train', 'test'):
        a = _parser().parse_args([cmd, '--meta-json', 'x/meta.json', '--out', 'o'] + (['--ckpt', 'c'] if cmd == 'test' else []))
        assert a.manifest == 'x/meta.json'

def test_skip_bad_removes_an_anomalous_image_without_a_mask(tmp_path):
    r = _mvtec(tmp_path)
    write_png(r/'bottle/test/broken/005.png', (8, 8))
    m, _ = _scan('mvtec', r, skip_bad=True)
    assert 'bottle/test/broken/005.png' not in {x.image for x in m.records}
    assert any('005.png' in s for s in m.report['skipped']) and all(x.mask for x in m.records if x.label)

def test_two_images_with_one_stem_are_an_ambiguous_pairing(tmp_path):
    r = _mvtec(tmp_path, n_bad=1)
    write_png(r/'bottle/test/broken/000.jpg', (8, 8))
    with pytest.raises(DatasetError, match=r'ambiguous pairing: .*000\.jpg and .*000\.png both match the mask .*000_mask\.png'):
        scan_dataset('mvtec', r)

def test_exif_orientation_applies_to_images_and_masks(tmp_path):
    from dlvp_clip.dataset import AnomalyDataset
    r = _mvtec(tmp_path, n_bad=0)
    ex = Image.Exif(); ex[0x0112] = 6                                            # phone: pixels stored sideways, shown turned 90°
    (r/'bottle/test/broken').mkdir()
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(r/'bottle/test/broken/000.jpg', exif=ex)
    write_png(r/'bottle/ground_truth/broken/000_mask.png', (12, 8), mask=True)  # the mask drawn on the upright photo
    for decode in (True, False):
        m, _ = _scan('mvtec', r, decode=decode)
    img, mask = AnomalyDataset(m, image_size=8).load_record(next(x for x in m.records if x.label))
    assert img.shape == (12, 8, 3) and mask.shape == (12, 8)
    write_png(r/'bottle/ground_truth/broken/000_mask.png', (8, 12), mask=True)  # a mask drawn on the stored, sideways pixels
    with pytest.raises(DatasetError, match='is 8×12 but its image .*000.jpg is 12×8 as its EXIF orientation tag turns it upright'):
        scan_dataset('mvtec', r)

def test_a_huge_image_is_a_clear_error_and_skip_bad_skips_it(tmp_path, monkeypatch):
    r = _mvtec(tmp_path)
    write_png(r/'bottle/test/good/001.png', (10, 10))
    monkeypatch.setenv('DLVP_CLIP_MAX_PIXELS', '99')
    with pytest.raises(DatasetError, match=r'001\.png has 100 pixels .*DLVP_CLIP_MAX_PIXELS=100'): scan_dataset('mvtec', r)
    m, _ = _scan('mvtec', r, skip_bad=True, decode=False)
    assert 'bottle/test/good/001.png' not in {x.image for x in m.records} and any('001.png' in s for s in m.report['skipped'])
    monkeypatch.setenv('DLVP_CLIP_MAX_PIXELS', '10')
    with pytest.raises(DatasetError, match='every image was skipped'): scan_dataset('mvtec', r, skip_bad=True)   # no empty manifest
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 40); monkeypatch.delenv('DLVP_CLIP_MAX_PIXELS')   # Pillow's own limit: no bare DecompressionBombError
    with pytest.raises(DatasetError, match='decompression bombs'): scan_dataset('mvtec', r)

def test_empty_class_and_defect_folders_warn(tmp_path):
    r = _mvtec(tmp_path)
    (r/'bottle/test/crack').mkdir(); (r/'cable/test/good').mkdir(parents=True); (r/'notes').mkdir()
    _, w = _scan('mvtec', r)
    assert any('empty folder bottle/test/crack/' in x for x in w) and any('class cable has no images' in x for x in w)
    assert any('ignored notes/' in x for x in w)

def test_written_manifests_follow_the_umask(tmp_path):
    import os
    from dlvp_clip.cli import main
    r = _mvtec(tmp_path/'mv')
    old = os.umask(0o022)
    try: assert _quiet(main, ['data', 'scan', 'mvtec', str(r), '--out', str(tmp_path/'m.json'), '--meta-json', str(tmp_path/'meta.json')]) == 0
    finally: os.umask(old)
    assert [(tmp_path/n).stat().st_mode & 0o777 for n in ('m.json', 'meta.json')] == [0o644, 0o644]
