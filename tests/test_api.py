"""The package's shape: a public API at the top, no import cycle, and a command line that is only a shell around it."""
import ast, json, os, subprocess, sys
from pathlib import Path

from conftest import ROOT

PKG = ROOT/'dlvp_clip'

def _modules(pkg: Path) -> dict:
    "Dotted module name -> file, for every module of a package folder."
    out = {}
    for f in pkg.rglob('*.py'):
        parts = list(f.relative_to(pkg.parent).with_suffix('').parts)
        if parts[-1] == '__init__': parts = parts[:-1]
        out['.'.join(parts)] = f
    return out

def import_graph(pkg: Path) -> dict:
    "Module -> the package's modules it imports, at any depth of the file (imports inside functions count: they still need each other)."
    mods, g = _modules(pkg), {}
    for m, f in mods.items():
        g[m] = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom):
                if n.level:
                    base = m.split('.') if f.name == '__init__.py' else m.split('.')[:-1]
                    base = base[:len(base) - (n.level - 1)]
                    target = '.'.join(base + ([n.module] if n.module else []))
                else: target = n.module or ''
                if target == pkg.name and all(a.name == '__version__' for a in n.names): continue   # __init__ sets it before importing anything
                names = [target] + [f'{target}.{a.name}' for a in n.names]
            elif isinstance(n, ast.Import): names = [a.name for a in n.names]
            else: continue
            g[m] |= {t for t in names if t in mods and t != m}
    return g

def cycles(g: dict) -> list[list[str]]:
    "The strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, found = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index); stack.append(v); on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: found.append(sorted(comp))
    for v in sorted(g):
        if v not in index: visit(v)
    return found

def test_the_cycle_check_finds_a_cycle(tmp_path):
    "The checker itself: two modules importing each other inside functions are reported."
    p = tmp_path/'pkg'; p.mkdir(); (p/'__init__.py').write_text('__version__ = "1"\n')
    (p/'a.py').write_text('def f():\n    from pkg.b import g\n'); (p/'b.py').write_text('from . import __version__\ndef g():\n    from .a import f\n')
    assert cycles(import_graph(p)) == [['pkg.a', 'pkg.b']]

def test_no_import_cycle_in_the_package():
    assert cycles(import_graph(PKG)) == []

CLI_MAY_IMPORT = {('dlvp_clip', '__version__'), ('dlvp_clip', 'api'), ('dlvp_clip.backbone', 'ACTIVATIONS'), ('dlvp_clip.backbone', 'TINY_CLIP'),
                  ('dlvp_clip.cache', 'default_workers'), ('dlvp_clip.imageio', 'DatasetError'), ('dlvp_clip.manifest', 'DATASETS'),
                  ('dlvp_clip.readers', 'FolderLayout'), ('dlvp_clip.evaluate', 'markdown_table'), ('dlvp_clip.train', 'saved_epoch')}
NOT_IN_CLI = ('torch', 'numpy', 'PIL', 'matplotlib', 'pandas', 'seaborn', 'open_clip', 'scipy', 'sklearn', 'skimage', 'safetensors')

def test_the_cli_is_only_a_shell():
    "cli.py parses, calls `dlvp_clip.api` and prints: no array/model/plotting library, no class, and only the constants it shows in --help."
    tree = ast.parse((PKG/'cli.py').read_text())
    bad = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): bad += [a.name for a in n.names if a.name.split('.')[0] in NOT_IN_CLI or a.name.startswith('dlvp_clip')]
        elif isinstance(n, ast.ImportFrom):
            if (n.module or '').split('.')[0] in NOT_IN_CLI: bad.append(n.module)
            elif (n.module or '').startswith('dlvp_clip'): bad += [f'{n.module}.{a.name}' for a in n.names if (n.module, a.name) not in CLI_MAY_IMPORT]
        elif isinstance(n, ast.ClassDef): bad.append(f'class {n.name}')
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in ('torch', 'np', 'plt', 'pd'): bad.append(f'{n.value.id}.{n.attr}')
    assert not bad, f"model, data or plotting logic in the CLI (move it into a library module and call it): {bad}"
    for f in (n for n in tree.body if isinstance(n, ast.FunctionDef)):   # every subcommand is one call of the API
        if f.name.startswith('_cmd_'): assert 'api.' in ast.unparse(f), f.name

def test_public_api_at_the_top():
    "The API's names resolve from the package, none hides a module of the same name, and `import dlvp_clip` stays light."
    import dlvp_clip
    mods = {m.split('.')[1] for m in _modules(PKG) if m.count('.') == 1}
    assert not set(dlvp_clip.__all__) & mods
    for n in dlvp_clip.__all__: assert getattr(dlvp_clip, n) is not None
    r = subprocess.run([sys.executable, '-c', 'import sys, dlvp_clip; print("torch" in sys.modules)'], capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert r.stdout.strip() == 'False', r.stderr

def test_python_m_and_json(tmp_path):
    "`python -m dlvp_clip` is the command; `methods --json` is one JSON document; --help lists the exit codes."
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}
    r = subprocess.run([sys.executable, '-m', 'dlvp_clip', 'methods', '--json'], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and {m['method'] for m in json.loads(r.stdout)} == {'winclip', 'anomalyclip', 'adaclip', 'bayespfl', 'dlvp'}
    from dlvp_clip.cli import _parser
    assert 'exit codes:' in _parser().format_help() and all(str(c) in _parser().format_help() for c in (71, 74, 75, 130))
    r = subprocess.run([sys.executable, '-m', 'dlvp_clip', 'test', '--method', 'dlvp', '--out', str(tmp_path/'o'), '--json'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and r.stdout == '' and 'must be trained first' in r.stderr

def test_predict_json_and_device(tmp_path):
    "`predict --json --device cpu`: stdout is the scores document only; the scores equal `model.predict` on the same file."
    import numpy as np, torch
    from PIL import Image
    import dlvp_clip
    from dlvp_clip.methods.registry import save_model
    torch.manual_seed(0)
    model = dlvp_clip.create('dlvp', backbone=dlvp_clip.TINY_CLIP, image_size=56)
    save_model(model, tmp_path/'m.safetensors')
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(tmp_path/'a.png')
    r = subprocess.run([sys.executable, '-m', 'dlvp_clip', 'predict', '--ckpt', str(tmp_path/'m.safetensors'), str(tmp_path/'a.png'),
                        '--out', str(tmp_path/'out'), '--json', '--device', 'cpu', '--workers', '0'],
                       capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': str(ROOT), 'HF_HUB_OFFLINE': '1'}, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    _, score = model.predict(tmp_path/'a.png')
    assert abs(doc['images'][str(tmp_path/'a.png')]['score'] - float(score[0])) < 1e-6
