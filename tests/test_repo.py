"""Repository checks that nbdev's CI runs: clean notebooks, library in sync, README in sync, one test command."""
import json, re, shutil, subprocess, sys
from pathlib import Path

from conftest import ROOT

NBS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT/'nbs').parts)
             and not (p.parent/'.notest').exists())

def _copy_project(dst: Path):
    for name in ('settings.ini', 'nbs', 'dlvp_clip'):
        src = ROOT/name
        if src.is_dir(): shutil.copytree(src, dst/name, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
        else: shutil.copy2(src, dst/name)

def _changed(a: Path, b: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(a)) for p in a.rglob(pattern)
                  if '.ipynb_checkpoints' not in p.parts and (not (b/p.relative_to(a)).exists() or p.read_bytes() != (b/p.relative_to(a)).read_bytes()))

def test_notebooks_are_clean(tmp_path):
    "nbdev_clean would change nothing (run on a copy, so the checkout is never touched)."
    _copy_project(tmp_path)
    subprocess.run(['nbdev_clean'], cwd=tmp_path, check=True, capture_output=True)
    changed = _changed(ROOT/'nbs', tmp_path/'nbs', '*.ipynb')
    assert not changed, f"unclean notebooks (run nbdev_clean and commit): {changed}"

def test_library_in_sync_with_notebooks(tmp_path):
    "nbdev_export would change nothing in dlvp_clip/."
    _copy_project(tmp_path)
    subprocess.run(['nbdev_export'], cwd=tmp_path, check=True, capture_output=True)
    changed = _changed(tmp_path/'dlvp_clip', ROOT/'dlvp_clip', '*.py') + _changed(ROOT/'dlvp_clip', tmp_path/'dlvp_clip', '*.py')
    assert not changed, f"library out of sync with the notebooks (run nbdev_export and commit): {sorted(set(changed))}"

def _script(name: str):
    import importlib.util
    sys.path.insert(0, str(ROOT/'scripts'))
    spec = importlib.util.spec_from_file_location(name, ROOT/'scripts'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_readme_matches_index_notebook():
    "README.md is nbs/index.ipynb converted by nbconvert, its links made relative to the root (scripts/make_readme.py)."
    assert _script('make_readme').readme_text() == (ROOT/'README.md').read_text(), \
        "README.md differs from nbs/index.ipynb: run python scripts/make_readme.py"

def test_readme_links_are_rewritten_from_the_index_folder():
    "A link that works from nbs/ works from the root after the rewrite; URLs and anchors are left alone."
    bd = _script('build_docs')
    md = ('[a](00_core.ipynb) [b](paper/01_main_results.ipynb#claim) <img src="../figures/x.png"> '
          '[c](https://x.org/y.ipynb) [d](#top) `e`')
    assert bd.readme_links(md) == ('[a](nbs/00_core.ipynb) [b](nbs/paper/01_main_results.ipynb#claim) <img src="figures/x.png"> '
                                   '[c](https://x.org/y.ipynb) [d](#top) `e`')
    assert bd.site_links(md, 'nbs/index.ipynb', 'index.html').startswith(
        '[a](modules/00_core.html) [b](paper/01_main_results.html#claim) <img src="figures/x.png">')
    assert bd.site_links('[i](../index.ipynb) [m](../30_metrics.ipynb) [j](../../dlvp_clip/data/paper_results.json)',
                         'nbs/paper/01_main_results.ipynb', 'paper/01_main_results.html') == \
        f'[i](../index.html) [m](../modules/30_metrics.html) [j]({bd.REPO_URL}/blob/main/dlvp_clip/data/paper_results.json)'

def relative_links(text: str) -> list[str]:
    "The relative link targets of Markdown/HTML text (code spans and blocks ignored), without #fragments."
    bd = _script('build_docs')
    text = re.sub(r'```.*?```|`[^`\n]*`', '', text, flags=re.S)
    return [t.split('#')[0] for t in (m['target'] for m in bd.LINK.finditer(text)) if bd.is_relative(t) and t.split('#')[0]]

def test_no_dead_links_in_notebooks_and_readme():
    "Every relative link in a notebook's Markdown (from the notebook's folder, as Jupyter resolves it) and in README.md exists."
    dead = []
    for nb in NBS:
        for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
            if c['cell_type'] != 'markdown': continue
            dead += [f"{nb.relative_to(ROOT)}: {t}" for t in relative_links(''.join(c['source'])) if not (nb.parent/t).exists()]
    dead += [f"README.md: {t}" for t in relative_links((ROOT/'README.md').read_text(encoding='utf-8')) if not (ROOT/t).exists()]
    assert not dead, f"{len(dead)} dead links: {dead}"
    assert len(relative_links((ROOT/'README.md').read_text(encoding='utf-8'))) > 20, 'the README should link the notebooks'

def _readme_commands() -> list[str]:
    blocks = re.findall(r'```bash\n(.*?)```', (ROOT/'README.md').read_text(), re.S)
    return [l.strip() for b in blocks for l in b.splitlines() if l.strip()]

def test_ci_runs_the_readme_test_command():
    "The README's test command is exactly what .ci/run calls."
    cmds = _readme_commands()
    assert 'python -m pytest' in cmds
    ci = [l.strip() for l in (ROOT/'.ci/run').read_text().splitlines()]
    assert 'python -m pytest' in ci

def test_every_notebook_opens_with_the_house_header():
    "Each module notebook: `#| default_exp` first, then an H1, a `>` subtitle and a paragraph; paper notebooks: H1 and subtitle, then the paper's claim."
    for nb in NBS:
        if nb.name == 'index.ipynb': continue
        cells = json.loads(nb.read_text())['cells']
        if nb.parent.name == 'paper':
            md = ''.join(cells[0]['source'])
            assert md.startswith('# ') and '\n> ' in md, nb.name
            assert any(''.join(c['source']).startswith('## What the paper') for c in cells), f"{nb.name}: no '## What the paper claims' section"
            continue
        assert cells[0]['cell_type'] == 'code' and ''.join(cells[0]['source']).startswith('#| default_exp'), nb.name
        md = ''.join(cells[1]['source'])
        assert md.startswith('# ') and '\n> ' in md and len(md.split('\n\n')) >= 3, nb.name

def test_settings_pins_nbdev2():
    ini = (ROOT/'settings.ini').read_text()
    for pin in ('nbdev>=2.4.14,<3', 'fastcore>=1.12.3,<2', 'execnb>=0.1.12,<0.2', 'ghapi<2'): assert pin in ini

def test_wheel_ships_what_the_library_reads(tmp_path):
    "A wheel (not a checkout) carries the paper's numbers and the tiny model config as package data."
    import zipfile
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(ROOT), '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path)],
                   check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob('*.whl'))).namelist()
    for want in ('dlvp_clip/data/paper_results.json', 'dlvp_clip/model_configs/DLVP-Tiny-14.json'):
        assert want in names, f"{want} missing from the wheel: add it to MANIFEST.in / package data"

def test_repository_is_self_contained():
    "Notebooks, library, README and data never point to design notes outside the repository."
    import re
    pat = re.compile(r'shared/design|\.\./shared|(method|peers|datasets|aesthetics)\.md`? §')
    files = [*(ROOT/'nbs').rglob('*.ipynb'), *(ROOT/'dlvp_clip').rglob('*.py'), *(ROOT/'dlvp_clip').rglob('*.json'),
             *(ROOT/'data_manifests').glob('*'), ROOT/'README.md']
    bad = [str(p.relative_to(ROOT)) for p in files if p.is_file() and pat.search(p.read_text(errors='ignore'))]
    assert not bad, f"files pointing outside the repository (cite public sources instead): {bad}"

def test_committed_bundle_was_made_by_this_code():
    "figures/bundle/about.json records the digest of the code that made it; a code change asks for a regeneration."
    mf = _script('make_figures')
    about = json.loads((ROOT/'figures'/'bundle'/'about.json').read_text())
    now = mf.source_digest(ROOT)
    assert about.get('source_digest') == now, (
        f"the committed bundle and figures were made by other code (digest {about.get('source_digest')}, the code now gives {now}): "
        "run `python scripts/make_figures.py --fresh` and commit figures/ and nbs/paper/")

def test_source_digest_ignores_comments_not_code(tmp_path):
    mf = _script('make_figures')
    (tmp_path/'dlvp_clip').mkdir(); f = tmp_path/'dlvp_clip'/'m.py'
    f.write_text('x = 1  # one\n'); a = mf.source_digest(tmp_path)
    f.write_text('x = 1  # the first\n\n'); assert mf.source_digest(tmp_path) == a
    f.write_text('x = 2\n'); assert mf.source_digest(tmp_path) != a
