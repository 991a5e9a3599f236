"""Build the documentation site (static HTML, offline) from the committed notebooks.

    python scripts/build_docs.py [--out _site] [--nbs nbs]

The pages are the notebooks as committed, outputs included, never re-executed: `nbs/index.ipynb`
(Home), the numbered module notebooks (Modules) and `nbs/paper/*.ipynb` (Paper), plus the hand-written
pages in `docs/extra/` (Method) and one API page per module, generated here from the exported
functions and classes (signature, docstring and the docments table of parameters). mkdocs with the
Material theme and mkdocs-jupyter renders them; MathJax 3 is copied into the site from the
django-static-mathjax wheel, so math renders with no network. Open `_site/index.html`, or serve it
with `python -m http.server -d _site`.
"""
import argparse, html, importlib, inspect, json, posixpath, re, shutil, sys, tempfile, time
from pathlib import Path, PurePosixPath

from fastcore.docments import docments

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the API pages document this checkout's dlvp_clip
from dlvp_clip.core import find_root, project_paths

MARKER = '.dlvp-clip-site'           # written into every built site: only such a folder is ever replaced
MATHJAX = 'es5/tex-svg-full.js'      # one self-contained file (all TeX extensions, SVG output: no font files to fetch)
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*?)\s*$')

def _directives(cell: dict) -> dict[str, str]:
    "nbdev's `#| name [value]` lines at the top of a code cell."
    out = {}
    for line in ''.join(cell['source']).splitlines():
        m = DIRECTIVE.match(line)
        if not m: break
        name, _, value = m.group(1).partition(' ')
        out[name.rstrip(':')] = value.strip()
    return out

def _strip_directives(src: str) -> str:
    lines = src.splitlines()
    while lines and DIRECTIVE.match(lines[0]): lines.pop(0)
    return '\n'.join(lines)

def title_of(nb: dict, path: Path) -> str:
    "The notebook's H1 (its first markdown line starting with '# ')."
    for c in nb['cells']:
        if c['cell_type'] != 'markdown': continue
        for line in ''.join(c['source']).splitlines():
            if line.startswith('# '): return line[2:].strip()
    raise ValueError(f"{path}: no '# Title' line in any markdown cell; add one (the site's navigation uses it).")

def default_exp(nb: dict) -> str | None:
    "The module a notebook exports to (`#| default_exp name`), if any."
    for c in nb['cells']:
        if c['cell_type'] == 'code' and 'default_exp' in (d := _directives(c)): return d['default_exp']
    return None

# ---- links --------------------------------------------------------------------------------------
# Notebooks link each other relative to where they live (nbs/, nbs/paper/), so the links work in Jupyter.
# The README (at the root) and the site (pages under modules/, paper/) sit elsewhere: their links are
# rewritten here from the same targets, so one source gives working links in all three places.

LINK = re.compile(r'(?P<pre>\]\(|\b(?:src|href)=["\'])(?P<target>[^)"\'\s]+)')
REPO_URL = 'https://github.com/dlvp-clip/dlvp-clip'   # as docs/mkdocs.yml's repo_url: "view source" links point there

def is_relative(target: str) -> bool:
    "A link into the repository (not a URL, a page anchor or a site-absolute path)."
    return not re.match(r'[a-zA-Z][a-zA-Z0-9+.-]*:|#|/', target)

def rewrite_links(text: str, # Markdown (or HTML) text
                  fix, # target (without #fragment) -> new target, or None to keep it
                 ) -> str:
    "Every relative link target in `text` passed through `fix`; fragments and absolute URLs kept."
    def one(m):
        t = m['target']
        if not is_relative(t): return m[0]
        path, hash_, frag = t.partition('#')
        new = fix(path) if path else None
        return m['pre'] + (new + hash_ + frag if new is not None else t)
    return LINK.sub(one, text)

def repo_path(nb_rel: str, # the notebook's path in the repository, e.g. 'nbs/paper/01_main_results.ipynb'
              target: str) -> str: # a relative link target in it
    "The link target as a path from the repository root."
    return posixpath.normpath(posixpath.join(posixpath.dirname(nb_rel), target))

def readme_links(md: str) -> str:
    "nbs/index.ipynb's links (relative to nbs/) made relative to the repository root, for README.md."
    return rewrite_links(md, lambda t: t if t.startswith('README_files/') else repo_path('nbs/index.ipynb', t))   # nbconvert's own outputs sit beside README.md

def site_path(path: str) -> str | None:
    "Where a repository file is in the site: notebooks become pages, figures are copied; None for anything else."
    p = PurePosixPath(path)
    if p.suffix == '.ipynb' and p.parent == PurePosixPath('nbs'):
        if p.name == 'index.ipynb': return 'index.html'
        if re.match(r'\d', p.name): return f'modules/{p.stem}.html'
    if p.suffix == '.ipynb' and p.parent == PurePosixPath('nbs/paper'): return f'paper/{p.stem}.html'
    if p.suffix == '.png' and p.parent == PurePosixPath('figures'): return f'figures/{p.name}'
    return None

def site_links(text: str, nb_rel: str, page: str) -> str:
    "Links of notebook `nb_rel` as seen from its site page `page` (e.g. 'modules/00_core.html'): pages and figures of "
    "the site, and any other repository file on GitHub."
    def fix(t):
        p = repo_path(nb_rel, t)
        if (s := site_path(p)) is not None: return posixpath.relpath(s, posixpath.dirname(page) or '.')
        return f'{REPO_URL}/blob/main/{p}'
    return rewrite_links(text, fix)

def page_notebook(path: Path, # a committed notebook
                  module: str | None = None, # the module it exports to: its page then links the module's API page
                  nb_rel: str | None = None, # its path in the repository (default: nbs/<name>): links are rewritten for the site
                 ) -> dict: # the notebook to render
    "The notebook as the site shows it: nbdev's hidden cells dropped, directive lines removed, links made site links, outputs kept."
    nb = json.loads(path.read_text(encoding='utf-8'))
    nb_rel = nb_rel or f'nbs/{path.name}'
    page = site_path(nb_rel) or f'modules/{path.stem}.html'
    cells = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code':
            cells.append(dict(c, source=site_links(''.join(c['source']), nb_rel, page)) if c['cell_type'] == 'markdown' else c)
            continue
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error':
                raise ValueError(f"{path}: cell {i} was committed with an error ({o.get('ename')}: {o.get('evalue')}); "
                                 "fix the notebook and commit it executed without errors.")
        d = _directives(c)
        if 'hide' in d or 'default_exp' in d or d.get('include') == 'false': continue
        c = dict(c, source=_strip_directives(''.join(c['source'])), metadata=dict(c.get('metadata', {})))
        tags = list(c['metadata'].get('tags', []))
        if d.get('echo') == 'false': tags.append('remove_input')
        if d.get('output') == 'false': tags.append('remove_output')
        if tags: c['metadata']['tags'] = tags
        cells.append(c)
    # under the title: the notebook itself (a copy served by the site, to run in Jupyter), its source, its API page
    up = posixpath.relpath('.', posixpath.dirname(page) or '.')
    links = [f"[open the notebook]({posixpath.join(up, 'notebooks', nb_rel.removeprefix('nbs/'))})",
             f"[view source]({REPO_URL}/blob/main/{nb_rel})"]
    if module: links.append(f"API reference: [dlvp_clip.{module}]({posixpath.join(up, 'api', module + '.html')})")
    at = next((i + 1 for i, c in enumerate(cells) if c['cell_type'] == 'markdown'), 0)
    cells.insert(at, dict(cell_type='markdown', id='page-links', metadata={}, source=' · '.join(links)))
    return dict(nb, cells=cells)

# ---- API pages ---------------------------------------------------------------------------------

def _md_text(s: str) -> str:
    "Docstring text for Markdown: `<` and `>` outside code spans escaped, so `<dataset>` is shown, not eaten as HTML."
    parts = re.split(r'(`[^`]*`)', s)
    return ''.join(p if p.startswith('`') else p.replace('<', '&lt;').replace('>', '&gt;') for p in parts)

def _cell(s) -> str:
    "Text for a Markdown table cell: one line, `|` escaped outside code spans (inside them the table ignores it)."
    parts = re.split(r'(`[^`]*`)', _md_text(str(s)).replace('\n', ' '))
    return ''.join(p if p.startswith('`') else p.replace('|', '\\|') for p in parts)

def _code(s: str) -> str: return f"<code>{html.escape(s).replace('|', '&#124;')}</code>" if s else ''

class _Raw(str):
    "An annotation shown as written (`str | Path`), not quoted as `from __future__ import annotations` leaves it."
    def __repr__(self): return str(self)

def _anno(a) -> str:
    if a is inspect.Parameter.empty or a is inspect.Signature.empty: return ''
    return a if isinstance(a, str) else inspect.formatannotation(a)

def _params_table(obj) -> str:
    "The docments table: name, type, default, comment (the `# comment` after each argument)."
    try: docs = docments(obj, full=True)
    except (TypeError, ValueError, OSError): return ''
    rows = []
    for name, d in docs.items():
        if name in ('self', 'cls'): continue
        default = '' if d.get('default', inspect.Parameter.empty) is inspect.Parameter.empty else repr(d['default'])
        anno = _anno(d.get('anno', inspect.Parameter.empty))
        if name == 'return' and not d.get('docment') and anno in ('', 'None'): continue
        rows.append(f"| {'**returns**' if name == 'return' else _code(name)} | {_code(anno)} "
                    f"| {_code(default)} | {_cell(d.get('docment') or '')} |")
    if not rows: return ''
    return '| | type | default | details |\n|---|---|---|---|\n' + '\n'.join(rows) + '\n'

def _signature(name: str, obj) -> str:
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f"```python\n{name}(...)\n```\n"
    raw = lambda a: _Raw(a) if isinstance(a, str) else a
    sig = sig.replace(parameters=[p.replace(annotation=raw(p.annotation)) for p in sig.parameters.values()],
                      return_annotation=raw(sig.return_annotation))
    text = f"{name}{sig}"
    if len(text) > 88:   # one parameter a line, as black would, rather than a code block that scrolls sideways
        P, ps, prev = inspect.Parameter, [], None
        for p in sig.parameters.values():
            if prev == P.POSITIONAL_ONLY and p.kind != prev: ps.append('/')
            if p.kind == P.KEYWORD_ONLY and prev not in (P.KEYWORD_ONLY, P.VAR_POSITIONAL): ps.append('*')
            ps.append(str(p)); prev = p.kind
        if prev == P.POSITIONAL_ONLY: ps.append('/')
        ret = f" -> {r}" if (r := _anno(sig.return_annotation)) else ''
        text = f"{name}(\n" + ''.join(f"    {x},\n" for x in ps) + f"){ret}"
    return f"```python\n{text}\n```\n"

def _doc_entry(qualname: str, obj, level: int) -> str:
    kind = 'class ' if inspect.isclass(obj) else ''
    out = [f"{'#' * level} {kind}{qualname}\n", _signature(qualname, obj)]
    if doc := inspect.getdoc(obj): out.append(_md_text(doc) + '\n')
    if table := _params_table(obj): out.append(table)
    return '\n'.join(out)

def api_page(module: str) -> str:
    "One module's API reference in Markdown: every name in `__all__`."
    mod = importlib.import_module(module)
    names = getattr(mod, '__all__', None)
    if names is None: raise ValueError(f"{module} has no __all__; run nbdev_export (it writes __all__ for exported names).")
    out = [f"# {module}\n", _md_text(inspect.getdoc(mod) or '') + '\n']
    for name in names:
        obj = getattr(mod, name)
        if inspect.isclass(obj):
            out.append(_doc_entry(name, obj, 2))
            for mname, m in vars(obj).items():
                if mname.startswith('_') or not (inspect.isfunction(m) or isinstance(m, (staticmethod, classmethod, property))): continue
                if isinstance(m, property):
                    ret = _anno(inspect.signature(m.fget).return_annotation)
                    doc = [_md_text(d)] if (d := inspect.getdoc(m.fget)) else []
                    com = (docments(m.fget, full=True).get('return') or {}).get('docment')
                    out.append('\n'.join([f"### {name}.{mname}\n", f"```python\n{name}.{mname}{f' -> {ret}' if ret else ''}  # property\n```\n",
                                           *doc, *([_md_text(com) + '\n'] if com else [])]))
                else: out.append(_doc_entry(f"{name}.{mname}", getattr(obj, mname), 3))
        elif callable(obj): out.append(_doc_entry(name, obj, 2))
        else:
            r = repr(obj); r = r if len(r) <= 300 else r[:300] + ' ...'
            out.append(f"## {name}\n\n```python\n{name} = {r}\n```\n")
    return '\n'.join(out)

# ---- the build ---------------------------------------------------------------------------------

def mathjax_file() -> Path:
    try: import mathjax
    except ImportError: raise ModuleNotFoundError("MathJax for the site comes from the django-static-mathjax package: pip install -e '.[dev]'") from None
    f = Path(mathjax.__file__).parent/'static'/'mathjax'/MATHJAX
    if not f.exists(): raise FileNotFoundError(f"{f} is missing; reinstall django-static-mathjax (pip install -e '.[dev]').")
    return f

def stage(root: Path, nbs: Path, src: Path) -> list:
    "Write every page into `src` (a temporary docs folder); return the navigation."
    index = nbs/'index.ipynb'
    if not index.exists(): raise FileNotFoundError(f"{index} is missing: the site's home page is nbs/index.ipynb.")
    modules = sorted(p for p in nbs.glob('*.ipynb') if re.match(r'\d', p.name))
    papers = sorted((nbs/'paper').glob('*.ipynb'))
    if not modules: raise FileNotFoundError(f"no numbered module notebooks (NN_name.ipynb) in {nbs}.")
    if not papers: raise FileNotFoundError(f"no paper notebooks in {nbs/'paper'}.")
    shutil.copytree(root/'docs'/'extra', src, ignore=shutil.ignore_patterns('.*'))
    if (root/'figures').is_dir():   # the home page's figure strip links figures/*.png (as README.md does on GitHub)
        (src/'figures').mkdir(); [shutil.copy2(f, src/'figures'/f.name) for f in sorted((root/'figures').glob('*.png'))]
    (src/'javascripts'/'mathjax').mkdir(parents=True, exist_ok=True)
    shutil.copy2(mathjax_file(), src/'javascripts'/'mathjax'/Path(MATHJAX).name)
    def write(rel: str, text: str):
        (src/rel).parent.mkdir(parents=True, exist_ok=True); (src/rel).write_text(text, encoding='utf-8')
    write('index.ipynb', json.dumps(page_notebook(index, nb_rel='nbs/index.ipynb')))
    nav_modules, nav_api, nav_paper = [], ['api/index.md'], []
    api_index = ['# API reference\n', 'Every exported function and class, one page per module, generated from the '
                 'signatures, docstrings and the comments after each argument (docments).\n',
                 '| module | notebook |\n|---|---|']
    for p in modules:
        nb = json.loads(p.read_text(encoding='utf-8'))
        mod, title = default_exp(nb), title_of(nb, p)
        write(f"modules/{p.name}", json.dumps(page_notebook(p, mod, f'nbs/{p.name}')))
        nav_modules.append({f"{p.name.split('_')[0]} · {title}": f"modules/{p.name}"})
        if mod:
            write(f"api/{mod}.md", api_page(f"dlvp_clip.{mod}"))
            nav_api.append({f"dlvp_clip.{mod}": f"api/{mod}.md"})
            api_index.append(f"| [dlvp_clip.{mod}]({mod}.md) | [{title}](../modules/{p.name}) |")
    write('api/index.md', '\n'.join(api_index) + '\n')
    for p in papers:
        write(f"paper/{p.name}", json.dumps(page_notebook(p, nb_rel=f'nbs/paper/{p.name}')))
        nav_paper.append({title_of(json.loads(p.read_text(encoding='utf-8')), p): f"paper/{p.name}"})
    return [{'Home': 'index.ipynb'}, {'Method': 'method.md'}, {'Modules': nav_modules},
            {'Paper': nav_paper}, {'API': nav_api}]

def build_site(root: Path, # the checkout (holds settings.ini and docs/mkdocs.yml)
               out: Path, # the site folder to (re)create; a folder not made by this script is never replaced
               nbs: Path | None = None, # the notebooks to show (default: the checkout's nbs/, as committed)
              ) -> Path: # `out`, holding index.html
    "Stage the pages, run mkdocs, and swap the finished site into `out` (nothing half-written on failure)."
    import logging
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort
    nbs = Path(nbs or project_paths(root).nbs).resolve(); out = Path(out).resolve()
    if not nbs.is_dir(): raise FileNotFoundError(f"--nbs {nbs} is not a folder of notebooks.")
    if out.exists() and any(out.iterdir()) and not (out/MARKER).exists():
        raise FileExistsError(f"{out} exists and is not a site built by this script; choose another --out or remove it.")
    if out in (root, nbs) or root.is_relative_to(out): raise ValueError(f"--out {out} would replace the checkout; use e.g. _site.")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.site-src-', dir=out.parent) as tmp:
        src, site = Path(tmp)/'docs', Path(tmp)/'site'
        nav = stage(root, nbs, src)
        log = logging.getLogger('mkdocs')      # mkdocs' own warnings (a broken link, a missing page) name the problem: show them
        shown = logging.StreamHandler(); shown.setLevel(logging.WARNING); shown.setFormatter(logging.Formatter('mkdocs %(levelname)s: %(message)s'))
        log.addHandler(shown)
        try: build(load_config(config_file=str(root/'docs'/'mkdocs.yml'), docs_dir=str(src), site_dir=str(site), nav=nav))
        except Abort as e: raise RuntimeError(f"the site was not built: {e} (strict mode: every mkdocs warning above is an error; "
                                              "fix the page or link it names)") from None
        finally: log.removeHandler(shown)
        for p in [nbs/'index.ipynb', *sorted(nbs.glob('[0-9]*.ipynb')), *sorted((nbs/'paper').glob('*.ipynb'))]:
            dst = site/'notebooks'/p.relative_to(nbs); dst.parent.mkdir(parents=True, exist_ok=True)   # "open the notebook" links
            shutil.copy2(p, dst)
        (site/MARKER).write_text('built by scripts/build_docs.py\n')
        if out.exists(): shutil.rmtree(out)
        site.rename(out)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=None, help='site folder (default: _site in the checkout)')
    ap.add_argument('--nbs', type=Path, default=None, help='notebooks folder (default: nbs/ in the checkout)')
    a = ap.parse_args()
    root = find_root(Path(__file__))
    t0 = time.time()
    try: out = build_site(root, a.out or root/'_site', a.nbs)
    except (OSError, ValueError, RuntimeError, ImportError) as e: sys.exit(f"build_docs: {e}")
    print(f"site in {out} ({time.time() - t0:.0f}s): open {out/'index.html'} or run `python -m http.server -d {out}`")

if __name__ == '__main__': main()
