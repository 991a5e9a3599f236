"""Regenerate the results bundle and every figure and table of the paper notebooks, in one command.

    python scripts/make_figures.py                     # tiny random backbone on generated data (~3 min on 2 cores)
    python scripts/make_figures.py --from runs/paper [--compare-from runs/compare]
                                                       # after `dlvp-clip reproduce --out runs/paper` (and `dlvp-clip compare`) on a GPU

1. Runs. Without `--from`: the demo's main run (train on four synthetic categories, zero-shot on four
   held-out ones) and every ablation sweep the paper notebooks plot (prompt depth, top-K, components,
   HFD variant, backbone size), each over three seeds, and `dlvp-clip compare` of the four methods, on the
   tiny random backbone, into runs/figures/.
   With `--from`: nothing is run; the reproduce folder's runs are read.
2. The results bundle: figures/bundle/ (or RUN/bundle with --from), small files labelled with the
   backbone that made them (see dlvp_clip.results).
3. Every notebook in nbs/paper/ executed in place against that bundle (outputs kept, nbdev-cleaned), so
   the notebooks read completely on GitHub and in the site, and their figures land in figures/.

Everything made with the tiny backbone says so on every figure; nothing here measures the paper's method.

Deterministic: a second `--fresh` run on the same machine rewrites every file byte for byte (one torch
thread per process, seeded runs, rounded CSVs, exact t-SNE, PNGs without metadata). about.json records
`source_digest`, a hash of the code that made the bundle and the figures (`source_digest` below);
tests/test_repo.py recomputes it and asks for a regeneration when the code has moved on.
"""
import argparse, hashlib, io, json, os, shutil, sys, time, tokenize
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dlvp_clip.core import find_root, project_paths
from execute_notebooks import execute, kernel_env     # scripts/ is on sys.path when this file runs

SEEDS = (0, 1, 2)                    # the ablations' spread is shown over these seeds
SWEEP_SIZE = 56                      # sweeps: tiny backbone at 56² (4×4 patches) keeps 60 short runs under ~2 minutes
SWEEP_TRAIN, SWEEP_TEST = ('woven', 'disc'), ('marble', 'ring')
SWEEPS = {'depth': [1, 3, 6, 9, 12], 'topk': [1, 2, 3, 4, 5], 'components': None, 'hfd': None,   # None: every named setting
          'backbone': [('DLVP-Tiny-14', 56), ('DLVP-Tiny-14', 84)]}

DIGEST_SOURCES = ('dlvp_clip/**/*.py', 'dlvp_clip/**/*.json', 'scripts/make_figures.py', 'nbs/paper/*.ipynb')
DIGEST_SKIP = ('dlvp_clip/_modidx.py',)   # nbdev's index of names: changes with any export, not with what the code does

def _code_tokens(text: str) -> str:
    "Python code without its comments and blank lines (so a reworded comment does not call for a regeneration)."
    try:
        toks = tokenize.generate_tokens(io.StringIO(text).readline)
        return '\x00'.join(t.string for t in toks if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING))
    except (tokenize.TokenError, IndentationError, SyntaxError): return text

def source_digest(root: Path) -> str:
    "SHA-256 over the files that make the bundle and figures: the library's code and data, this script, the paper notebooks' code cells."
    h = hashlib.sha256()
    files = sorted({f for pat in DIGEST_SOURCES for f in Path(root).glob(pat)} - {Path(root)/x for x in DIGEST_SKIP})
    for f in files:
        rel = f.relative_to(root).as_posix()
        if f.suffix == '.py': body = _code_tokens(f.read_text(encoding='utf-8'))
        elif f.suffix == '.ipynb':
            body = '\x01'.join(_code_tokens(''.join(c['source'])) for c in json.loads(f.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code')
        else: body = f.read_text(encoding='utf-8')
        h.update(rel.encode() + b'\x02' + body.encode() + b'\x03')
    return h.hexdigest()[:16]

def _sweep_job(args):
    "One sweep kind at one seed (runs in a worker process with one torch thread)."
    kind, seed, data, out = args
    import torch; torch.set_num_threads(1)
    from dlvp_clip.backbone import TINY_CLIP
    from dlvp_clip.readers import scan_dataset
    from dlvp_clip import sweep
    from dlvp_clip.train import TrainConfig
    man = scan_dataset('synthetic', data)
    df = sweep.run_sweep(kind, SWEEPS[kind], man, man, Path(out)/kind/f'seed_{seed}', train_classes=SWEEP_TRAIN, test_classes=SWEEP_TEST,
                   backbone=TINY_CLIP, image_size=SWEEP_SIZE, log=lambda s: None,
                   tcfg=TrainConfig(lr=1e-3, epochs=1, batch_size=8, mosaic=0.0), seeds=(seed,))
    return kind, df

def _demo_job(out: str):
    "The README's demo (train on four synthetic categories, zero-shot on four others), then the bundle's text features and gallery."
    import torch; torch.set_num_threads(1)
    from dlvp_clip.api import load_checkpoint
    from dlvp_clip.demo import DEMO_TEST, run_demo
    from dlvp_clip.dataset import AnomalyDataset
    from dlvp_clip.readers import scan_dataset
    from dlvp_clip.results import gallery_arrays, text_features
    out = Path(out)
    if not (out/'eval').exists(): run_demo(out, log=lambda s: None)
    model = load_checkpoint(sorted((out/'train'/'checkpoints').glob('epoch_*.safetensors'))[-1])
    ds = AnomalyDataset(scan_dataset('synthetic', out/'data'), image_size=model.cfg.image_size, classes=DEMO_TEST,
                        mean=model.backbone.mean, std=model.backbone.std)
    return text_features(model, ds), gallery_arrays(model, ds)

COMPARE = dict(epochs=3, batch_size=4, image_size=56, max_classes=2) # the comparison: every method, tiny backbone, generated MVTec/VisA stand-ins

def _compare_job(out: str):
    "`dlvp-clip compare` of every method (trained 3 epochs on the generated MVTec stand-in, zero-shot on the VisA one)."
    import torch; torch.set_num_threads(1)
    from dlvp_clip.backbone import TINY_CLIP
    from dlvp_clip.compare import CompareConfig, run_compare
    from dlvp_clip.reproduce import make_smoke_data
    from dlvp_clip.results import compare_tables
    out = Path(out)
    data = make_smoke_data(out/'data', size=64)
    run_compare(CompareConfig(str(data), str(out), protocol='mvtec', targets=('visa',), backbone=TINY_CLIP, pretrained=None,
                              skip_missing=True, **COMPARE), log=lambda s: None)
    return compare_tables(out)

def tiny_runs(runs: Path, workers: int) -> dict:
    "The main run (the demo) and the multi-seed sweeps with the tiny backbone; resumable (finished parts are kept)."
    import pandas as pd
    from dlvp_clip.synthetic import make_synthetic
    runs.mkdir(parents=True, exist_ok=True)
    data = runs/'sweep_data'
    if not data.exists():
        make_synthetic(data, SWEEP_TRAIN + SWEEP_TEST, size=64, n_train=0, n_good=3, n_per_defect=1, seed=0)
    jobs = [(k, s, str(data), str(runs/'sweeps')) for k in SWEEPS for s in SEEDS]
    with ProcessPoolExecutor(workers) as ex:          # the demo and its bundle parts on one worker, sweeps on the others
        demo = ex.submit(_demo_job, str(runs/'main'))
        compare = ex.submit(_compare_job, str(runs/'compare'))
        parts = list(ex.map(_sweep_job, jobs))
        text, gallery = demo.result()
    sweeps = {k: pd.concat([df for kk, df in parts if kk == k], ignore_index=True) for k in SWEEPS}
    return dict(main=runs/'main', sweeps=sweeps, text=text, gallery=gallery, compare=compare.result())

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--from', dest='src', help='a `dlvp-clip reproduce` output folder to read instead of running the tiny stand-in')
    ap.add_argument('--compare-from', help='with --from: a `dlvp-clip compare --out` folder whose tables join the bundle')
    ap.add_argument('--fresh', action='store_true', help='delete runs/figures first (tiny stand-in only)')
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1), help='parallel processes (one torch thread each)')
    ap.add_argument('--no-notebooks', action='store_true', help='write the bundle only')
    a = ap.parse_args()
    paths = project_paths(find_root(Path(__file__)))
    t0 = time.time()
    env = kernel_env()
    if a.src:
        from dlvp_clip.results import bundle_from_reproduce
        out = bundle_from_reproduce(Path(a.src), Path(a.src)/'bundle')
        if a.compare_from:                            # the comparison's tables join the bundle as write_bundle lays them out
            from dlvp_clip.results import compare_tables
            (out/'compare').mkdir(exist_ok=True)
            for k, df in compare_tables(a.compare_from).items(): df.to_csv(out/'compare'/f'{k}.csv', index=False, float_format='%.4f')
        env['DLVP_RESULTS'] = str(out)
    else:
        runs = paths.runs/'figures'
        if a.fresh: shutil.rmtree(runs, ignore_errors=True)
        r = tiny_runs(runs, a.workers)
        print(f"runs in {runs} ({time.time() - t0:.0f}s)")
        about = dict(backbone='DLVP-Tiny-14', pretrained=None, image_size=112, sweep_image_size=SWEEP_SIZE, seeds=list(SEEDS),
                     data='synthetic defects generated by dlvp_clip.synthetic (seed 0)',
                     main='`dlvp-clip demo`: trained 8 epochs on woven, grain, disc, bar; zero-shot on marble, tiles, ring, plug',
                     sweeps=f'1 epoch on {", ".join(SWEEP_TRAIN)}; zero-shot on {", ".join(SWEEP_TEST)}; seeds {list(SEEDS)}',
                     compare=f"`dlvp-clip compare` of every method at {COMPARE['image_size']} px: {COMPARE['epochs']} epochs (batch {COMPARE['batch_size']}) on a generated "
                             f"MVTec-AD stand-in, zero-shot on a generated VisA stand-in, {COMPARE['max_classes']} classes each",
                     compare_image_size=COMPARE['image_size'],
                     dataset_labels=dict(synthetic='generated defects', mvtec='MVTec-AD stand-in (generated)', visa='VisA stand-in (generated)'),
                     source_digest=source_digest(paths.root),
                     command='python scripts/make_figures.py --fresh',
                     note="Tiny random backbone (DLVP-Tiny-14, random weights): it exercises the pipeline and measures nothing about the method.")
        import pandas as pd
        from dlvp_clip.results import write_bundle
        mains = {p.parent.name: pd.read_csv(p) for p in sorted((r['main']/'eval').glob('*/metrics.csv'))}
        out = write_bundle(paths.bundle, about, main=mains, sweeps=r['sweeps'], text={'synthetic': r['text']}, gallery={'synthetic': r['gallery']},
                           compare=r['compare'])
        env.pop('DLVP_RESULTS', None)
    print(f"bundle: {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1e3:.0f} kB, {time.time() - t0:.0f}s)")
    if a.no_notebooks: return
    failed = execute(sorted((paths.nbs/'paper').glob('*.ipynb')), env, a.workers)
    print(f"figures in {paths.figures} ({time.time() - t0:.0f}s)")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
