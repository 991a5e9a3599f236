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

def test_readme_matches_index_notebook(tmp_path):
    "README.md is nbs/index.ipynb converted by nbconvert."
    subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'markdown', str(ROOT/'nbs/index.ipynb'),
                    '--output-dir', str(tmp_path), '--output', 'README'], check=True, capture_output=True)
    assert (tmp_path/'README.md').read_text() == (ROOT/'README.md').read_text(), \
        "README.md differs from nbs/index.ipynb: jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README"

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
