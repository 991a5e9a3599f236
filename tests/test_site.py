"""The documentation site: built offline from the committed notebooks, opened in headless Chromium."""
import functools, html, http.server, importlib.util, json, os, re, subprocess, sys, threading
from pathlib import Path

import pytest
from conftest import ROOT

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
INSTALL = 'install them with `apt-get install chromium chromium-driver` (Debian/Ubuntu)'
REQUIRE = 'DLVP_REQUIRE_BROWSER'     # set to 1 by .ci/run: there a missing browser fails the test instead of skipping it

def need_browser():
    "Skip (or, under DLVP_REQUIRE_BROWSER=1 as in CI, fail) when headless Chromium and its driver are not installed."
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing: return
    msg = f"the browser test needs headless Chromium: {' and '.join(missing)} not found; {INSTALL}"
    if os.environ.get(REQUIRE) == '1': pytest.fail(f"{msg} ({REQUIRE}=1: this run must open the site in a browser)")
    pytest.skip(msg)

def _load_build_docs():
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'scripts'/'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

bd = _load_build_docs()

def build(nbs: Path, out: Path) -> Path:
    "The README's command, run as a user runs it."
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'build_docs.py'), '--out', str(out), '--nbs', str(nbs)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"scripts/build_docs.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out

def paper_with_images(nbs: Path) -> Path | None:
    "The first paper notebook committed with an image output (a figure the page must show)."
    for p in sorted((nbs/'paper').glob('*.ipynb')):
        cells = json.loads(p.read_text(encoding='utf-8'))['cells']
        if any('image/png' in o.get('data', {}) for c in cells for o in c.get('outputs', [])): return p
    return None

MATH = re.compile(r'\$\$.+?\$\$|(?<![\\$])\$[^\s$][^$\n]*?\$', re.S)

def page_with_math(nbs: Path) -> str | None:
    "The site page of the first notebook whose markdown has TeX math ($...$ or $$...$$ outside code spans)."
    for p in [nbs/'index.ipynb', *sorted(nbs.glob('[0-9]*.ipynb')), *sorted((nbs/'paper').glob('*.ipynb'))]:
        md = [re.sub(r'```.*?```|`[^`]*`', '', ''.join(c['source']), flags=re.S)
              for c in json.loads(p.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'markdown']
        if any(MATH.search(m) for m in md):
            return 'index.html' if p.name == 'index.ipynb' else f"{'paper' if p.parent.name == 'paper' else 'modules'}/{p.stem}.html"
    return None

@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path: return build(ROOT/'nbs', tmp_path_factory.mktemp('site')/'_site')

# ---- the pieces, without a build ----------------------------------------------------------------

def _nb(*cells) -> dict: return dict(nbformat=4, nbformat_minor=5, metadata={}, cells=list(cells))
def _code(src, outputs=()) -> dict: return dict(cell_type='code', id='x', metadata={}, source=src, outputs=list(outputs), execution_count=None)
def _md(src) -> dict: return dict(cell_type='markdown', id='y', metadata={}, source=src)

def test_page_notebook_follows_nbdev_directives(tmp_path):
    "Hidden and default_exp cells are dropped, directive lines removed, echo/output false become tags."
    p = tmp_path/'00_x.ipynb'
    p.write_text(json.dumps(_nb(_code('#| default_exp x'), _md('# X\n\n> sub'), _code('#| hide\nsecret = 1'),
                                _code('#| export\ndef f(): pass'), _code('#| echo: false\n1'), _code('#| output: false\n2'))))
    cells = bd.page_notebook(p, 'x')['cells']
    srcs = [''.join(c['source']) for c in cells]
    assert srcs[0] == '# X\n\n> sub' and srcs[2:] == ['def f(): pass', '1', '2'], srcs
    assert srcs[1] == ('[open the notebook](../notebooks/00_x.ipynb) · [view source](https://github.com/dlvp-clip/dlvp-clip/blob/main/nbs/00_x.ipynb)'
                       ' · API reference: [dlvp_clip.x](../api/x.html)'), srcs[1]
    assert [c['metadata'].get('tags') for c in cells[3:]] == [['remove_input'], ['remove_output']]
    assert all('id' in c for c in cells)

def test_api_entry_shows_signature_docstring_and_docments():
    def f(a: 'str | Path', # the input
          b: int = 2, # how many
         ) -> 'Path': # where it went
        "Do `<x>` with <b>."
    md = bd._doc_entry('f', f, 2)
    assert '```python\nf(a: str | Path, b: int = 2) -> Path\n```' in md and 'Do `<x>` with &lt;b&gt;.' in md
    assert '| <code>a</code> | <code>str &#124; Path</code> |  | the input |' in md
    assert '| <code>b</code> | <code>int</code> | <code>2</code> | how many |' in md
    assert '| **returns** | <code>Path</code> |  | where it went |' in md
    def g(aaaaaaaaaaaaaaaaaaaaaaaaa: int, bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb: int, *, ccccccccccccccccccccccc: int = 1): pass
    assert '```python\ng(\n    aaaaaaaaaaaaaaaaaaaaaaaaa: int,\n    bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb: int,\n    *,\n' in bd._doc_entry('g', g, 2)

def test_bad_inputs_fail_clearly(tmp_path):
    p = tmp_path/'bad.ipynb'
    p.write_text(json.dumps(_nb(_md('# Bad'), _code('1/0', [dict(output_type='error', ename='ZeroDivisionError', evalue='division by zero', traceback=[])]))))
    with pytest.raises(ValueError, match='committed with an error'): bd.page_notebook(p)
    p.write_text(json.dumps(_nb(_md('no title here'))))
    with pytest.raises(ValueError, match="no '# Title' line"): bd.title_of(json.loads(p.read_text()), p)
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not a site built by this script'): bd.build_site(ROOT, tmp_path/'mine')
    assert (tmp_path/'mine'/'notes.txt').read_text() == 'keep me'
    with pytest.raises(FileNotFoundError, match='is not a folder of notebooks'): bd.build_site(ROOT, tmp_path/'out', tmp_path/'nope')
    (tmp_path/'nbs').mkdir()
    with pytest.raises(FileNotFoundError, match='home page is nbs/index.ipynb'): bd.build_site(ROOT, tmp_path/'out', tmp_path/'nbs')
    assert not (tmp_path/'out').exists() and not list(tmp_path.glob('.site-src-*')), 'a failed build left files behind'

def test_broken_link_fails_the_build(tmp_path, capfd):
    "Strict mode: the Method page links every module page, so a notebook set without them stops the build, naming the link."
    nbs = tmp_path/'nbs'; (nbs/'paper').mkdir(parents=True)
    for p in [ROOT/'nbs'/'index.ipynb', sorted((ROOT/'nbs').glob('0*.ipynb'))[0], sorted((ROOT/'nbs'/'paper').glob('*.ipynb'))[0]]:
        (nbs/p.relative_to(ROOT/'nbs')).write_bytes(p.read_bytes())
    with pytest.raises(RuntimeError, match='the site was not built'): bd.build_site(ROOT, tmp_path/'site', nbs)
    assert "contains a link 'modules/14_dlvp_slfs.ipynb'" in capfd.readouterr().err
    assert not (tmp_path/'site').exists() and not list(tmp_path.glob('.site-src-*')), 'a failed build left files behind'

# ---- the built site ----------------------------------------------------------------------------

def test_site_is_self_contained(site):
    "Every script and stylesheet is served by the site itself (no CDN is reachable offline), MathJax included."
    external = re.compile(r'<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["\']?(?:https?:)?//', re.I)
    pages = list(site.rglob('*.html'))
    assert len(pages) > 20 and (site/'javascripts'/'mathjax'/'tex-svg-full.js').stat().st_size > 1e6
    offenders = [str(p.relative_to(site)) for p in pages if external.search(p.read_text(encoding='utf-8'))]
    assert not offenders, f"pages loading scripts/styles from the network: {offenders}"

def test_every_notebook_is_a_page(site):
    pages = {'index.ipynb': 'index.html'} | {p.name: f"modules/{p.stem}.html" for p in (ROOT/'nbs').glob('[0-9]*.ipynb')} \
            | {f"paper/{p.name}": f"paper/{p.stem}.html" for p in (ROOT/'nbs'/'paper').glob('*.ipynb')}
    missing = [nb for nb, page in pages.items() if not (site/page).exists()]
    assert len(pages) > 20 and not missing, f"notebooks without a page: {missing}"

def test_api_pages_show_signatures_and_docments(site):
    "The API page of a module shows each exported function's docstring and the comment of each parameter."
    from fastcore.docments import docments
    from dlvp_clip import core
    text = html.unescape(re.sub(r'<[^>]+>', '', (site/'api'/'core.html').read_text(encoding='utf-8')))
    for name in core.__all__:
        obj = getattr(core, name)
        if not callable(obj) or isinstance(obj, type): continue
        assert f"{name}(" in text, name
        for arg, d in docments(obj, full=True).items():
            if d['docment']: assert d['docment'].replace('`', '') in text, f"{name}: docment of {arg} missing from api/core.html"

ATTR = re.compile(r'\b(?:href|src)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')', re.I)

def dead_links(site: Path) -> list[str]:
    "Every href/src of every built page that points inside the site and finds no file (query and #fragment ignored)."
    from urllib.parse import unquote, urlsplit
    dead = []
    for page in sorted(site.rglob('*.html')):
        text = re.sub(r'<(script|style)\b.*?</\1>', '', page.read_text(encoding='utf-8'), flags=re.S | re.I)  # attributes, not JS strings
        for m in ATTR.finditer(text):
            url = html.unescape(m.group(1) if m.group(1) is not None else m.group(2)).strip()
            u = urlsplit(url)
            if u.scheme or u.netloc or not u.path: continue          # another site, data:, javascript:, or an anchor on this page
            target = (site/unquote(u.path).lstrip('/')) if u.path.startswith('/') else (page.parent/unquote(u.path))
            if target.is_dir(): target = target/'index.html'
            if not target.resolve().is_file(): dead.append(f"{page.relative_to(site)} -> {url}")
    return dead

def test_no_dead_links_in_the_site(site):
    "A crawler over every built page: each relative href/src (page, figure, notebook, script, stylesheet) exists."
    dead = dead_links(site)
    assert not dead, f"{len(dead)} dead links in the site: {dead[:40]}"
    home = (site/'index.html').read_text(encoding='utf-8')
    assert 'href="modules/00_core.html"' in home and 'src="figures/' in home, 'the home page should link the module pages and figures'
    assert 'notebooks/00_core.ipynb' in (site/'modules'/'00_core.html').read_text(encoding='utf-8')

def test_crawler_finds_a_dead_link(tmp_path):
    (tmp_path/'a').mkdir(); (tmp_path/'a'/'ok.png').write_bytes(b'x')
    (tmp_path/'a'/'p.html').write_text('<a href="ok.png#x">k</a> <img src="gone.png"> <a href="https://x.org/y">u</a> <a href="#t">t</a>'
                                       '<script>var s = "<a href=\'nope.html\'>"</script>')
    assert dead_links(tmp_path) == ['a/p.html -> gone.png']

def _serve(site: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv

def _browser(tmp_path: Path):
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1280,1600',
                 f'--user-data-dir={tmp_path/"chromium-profile"}'):
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    drv.set_page_load_timeout(60); drv.set_script_timeout(60)
    return drv

WAIT_MATH = """const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup) { done('MathJax did not load'); return; }
MathJax.startup.promise.then(() => done(null), e => done(String(e)));"""

DECODE_IMAGES = """const done = arguments[arguments.length - 1];
Promise.all([...document.querySelectorAll('img')].map(i => i.decode().then(() => [i.src.slice(0, 60), i.naturalWidth],
                                                                            () => [i.src.slice(0, 60), 0]))).then(done);"""

def _math(drv, page: str) -> int:
    assert (err := drv.execute_async_script(WAIT_MATH)) is None, f"{page}: {err}"
    n = len(drv.find_elements('css selector', 'mjx-container'))
    assert n > 0 and not drv.find_elements('css selector', 'mjx-merror'), f"{page}: math not rendered ({n} formulas, or a MathJax error)"
    return n

def check_pages(site: Path, paper: Path, tmp_path: Path, math_page: str | None = None) -> dict:
    "Open the home, Method, `paper` (and `math_page`) pages in headless Chromium; return what was measured."
    srv, drv = _serve(site), _browser(tmp_path)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        drv.get(f"{url}/index.html")
        assert 'dlvp-clip' in drv.title, f"home page title: {drv.title!r}"
        assert drv.find_elements('css selector', 'nav.md-tabs a'), 'no navigation tabs on the home page'
        home = drv.execute_async_script(DECODE_IMAGES)
        assert home and all(w > 0 for _, w in home), f"home page figure strip not shown (src, naturalWidth): {home}"
        drv.get(f"{url}/method.html"); n_math = _math(drv, 'method.html')
        if math_page: drv.get(f"{url}/{math_page}"); n_math += _math(drv, math_page)   # notebook markdown goes through nbconvert, not arithmatex
        drv.get(f"{url}/paper/{paper.stem}.html")
        title = bd.title_of(json.loads(paper.read_text(encoding='utf-8')), paper)
        assert title in drv.title, f"paper page title {drv.title!r} (expected {title!r})"
        imgs = drv.execute_async_script(DECODE_IMAGES)
        n_out = sum(k.startswith('image/') for c in json.loads(paper.read_text(encoding='utf-8'))['cells']
                    for o in c.get('outputs', []) for k in o.get('data', {}))
        assert imgs and len(imgs) >= n_out and all(w > 0 for _, w in imgs), \
            f"{paper.name}: {n_out} image outputs, page images (src, naturalWidth) {imgs}"
        drv.save_screenshot(str(tmp_path/'paper.png'))
        assert (tmp_path/'paper.png').stat().st_size > 10_000
        return dict(math=n_math, images=imgs)
    finally:
        drv.quit(); srv.shutdown(); srv.server_close()

def test_site_in_chromium(site, tmp_path):
    "Home and a paper page load, the paper's figures are decoded, the math is typeset; a screenshot is kept."
    need_browser()
    paper = paper_with_images(ROOT/'nbs')
    assert paper is not None, ("no notebook in nbs/paper/ was committed with an image/png output: the site would show no figure. "
                               "Commit the paper notebooks executed (python scripts/make_figures.py runs them) with each figure "
                               "displayed in the notebook, not only saved to figures/.")
    check_pages(site, paper, tmp_path, page_with_math(ROOT/'nbs'))

def test_missing_browser_skips_with_the_install_command_or_fails_in_ci(monkeypatch, tmp_path):
    "A fresh machine without Chromium skips the browser test, saying how to install it; under .ci/run's variable it fails."
    monkeypatch.setattr(sys.modules[__name__], 'CHROMIUM', tmp_path/'no-chromium')
    monkeypatch.delenv(REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match='apt-get install chromium chromium-driver'): need_browser()
    monkeypatch.setenv(REQUIRE, '1')
    with pytest.raises(pytest.fail.Exception, match=f'{REQUIRE}=1'): need_browser()
    assert f'export {REQUIRE}=1' in (ROOT/'.ci'/'run').read_text(), f".ci/run must set {REQUIRE}=1 so CI runs the browser test"
