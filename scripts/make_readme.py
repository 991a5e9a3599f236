"""Write README.md from nbs/index.ipynb (nbconvert to Markdown), with its links made relative to the repository root.

    python scripts/make_readme.py

The index notebook lives in nbs/ and links the notebooks and figures relative to that folder (so the
links work in Jupyter and, rewritten by scripts/build_docs.py, in the site); README.md sits at the root,
so each relative link is rewritten once more here (`00_core.ipynb` -> `nbs/00_core.ipynb`,
`../figures/x.png` -> `figures/x.png`). tests/test_repo.py checks README.md is what this writes.
"""
import shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'scripts'))
from build_docs import readme_links

def readme_text(index: Path = ROOT/'nbs'/'index.ipynb', figures_to: Path = None) -> str:
    "README.md's text: the index notebook converted by nbconvert, links rewritten for the repository root."
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'markdown', str(index), '--output-dir', d, '--output', 'README'],
                       check=True, capture_output=True)
        if figures_to is not None:                     # the quick start's inline figure(s): README_files/, replaced whole
            shutil.rmtree(figures_to, ignore_errors=True)
            if (Path(d)/'README_files').is_dir(): shutil.copytree(Path(d)/'README_files', figures_to)
        return readme_links((Path(d)/'README.md').read_text(encoding='utf-8'))

if __name__ == '__main__':
    (ROOT/'README.md').write_text(readme_text(figures_to=ROOT/'README_files'), encoding='utf-8')
    print(f"wrote {ROOT/'README.md'}")
