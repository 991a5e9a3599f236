"""Inference cost of every registered method relative to one plain open_clip forward, measured in one run.

For each method (WinCLIP, AnomalyCLIP, AdaCLIP, Bayes-PFL, DLVP-CLIP by default) on the same backbone (random weights,
ViT-L-14-336 at 518 by default, batch 1, CPU), prints ms/image of `predict` and of one plain open_clip
`encode_image`, interleaved over rounds so that the machine's drift hits all of them alike, and the ratio of the
medians. Peak memory is measured first, in a fresh child process per method: the high-water mark of its resident set
(`VmHWM`, which starts afresh at exec, unlike `ru_maxrss`, which a child inherits from its parent) after one inference,
beside the plain forward's child.

The targets are the ratios the authors' own code reaches on this class of machine, measured side by side with
their repositories: AdaCLIP 2.7x, Bayes-PFL 2.3x (R = 10 samples: 60 text sequences per image) and AnomalyCLIP
1.6x a plain forward.
Measured here on 2026-12-05 (2 threads, a loaded 2-core VM: plain forward 33-43 s): Bayes-PFL 1.27x a plain forward
(median of 3 rounds), peak memory 1.06x (R = 10; its own code: 2.3x). WinCLIP runs the transformer once per
window (1296 + 1225 windows at 37x37 patches), so it has no such target; its multiply-add count is about 12x.

    python benchmarks/methods.py [--methods winclip,anomalyclip,adaclip,bayespfl,dlvp] [--backbone ViT-L-14-336]
                                 [--image-size 518] [--rounds 2] [--threads 2] [--no-memory]
"""
import argparse, json, statistics, subprocess, sys, time

import torch

from dlvp_clip.backbone import load_backbone
from dlvp_clip.methods.registry import get_method, list_methods

TARGETS = {'adaclip': 2.7, 'anomalyclip': 1.6, 'bayespfl': 2.3} # the authors' own code on this class of machine, x one plain forward

def build(method: str, backbone: str, size: int):
    "The backbone and (unless method is 'plain') the method on it, random weights, eval mode."
    torch.manual_seed(0)
    bb = load_backbone(backbone, pretrained=None, image_size=size, log=lambda s: None)
    return bb, (None if method == 'plain' else get_method(method, bb).eval())

def runner(method: str, bb, model, x):
    if model is None: return lambda: bb.clip.encode_image(x)
    return lambda: model.predict(x, 'bottle', score='log_odds')

def peak_mib() -> float:
    "This process's resident-set high-water mark (Linux /proc), in MiB."
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024
    raise SystemExit('no VmHWM in /proc/self/status: peak memory is measured on Linux only (use --no-memory)')

def child(method: str, backbone: str, size: int, threads: int):
    "One inference in this (fresh) process; prints its peak resident memory in MiB as JSON."
    torch.set_num_threads(threads)
    bb, model = build(method, backbone, size)
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode(): runner(method, bb, model, x)()
    print(json.dumps(dict(method=method, peak_mib=peak_mib())))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--methods', default=','.join(list_methods()))
    ap.add_argument('--backbone', default='ViT-L-14-336')
    ap.add_argument('--image-size', type=int, default=518)
    ap.add_argument('--rounds', type=int, default=2, help='timing rounds (0: memory only)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--no-memory', action='store_true', help='skip the per-method child processes that measure peak memory')
    ap.add_argument('--child', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(a.child, a.backbone, a.image_size, a.threads)
    methods = [m.strip() for m in a.methods.split(',') if m.strip()]
    mem = {}                                                  # first: children forked from a small parent
    if not a.no_memory:
        for m in ['plain', *methods]:
            out = subprocess.run([sys.executable, __file__, '--child', m, '--backbone', a.backbone, '--image-size', str(a.image_size),
                                  '--threads', str(a.threads)], capture_output=True, text=True)
            if out.returncode: raise SystemExit(f"memory child for {m} failed:\n{out.stderr[-2000:]}")
            mem[m] = json.loads(out.stdout.strip().splitlines()[-1])['peak_mib']
    torch.set_num_threads(a.threads)
    x = torch.randn(1, 3, a.image_size, a.image_size)
    bb, _ = build('plain', a.backbone, a.image_size) if a.rounds else (None, None)
    fns = {'plain': runner('plain', bb, None, x)}
    for m in (methods if a.rounds else ()):
        torch.manual_seed(0)
        fns[m] = runner(m, bb, get_method(m, bb).eval(), x)   # one shared backbone: only the method's own work differs
    times = {k: [] for k in fns}
    with torch.inference_mode():
        for f in (fns.values() if a.rounds else ()): f()      # warm-up (text caches of the methods that keep them)
        for r in range(a.rounds):
            for k, f in fns.items():
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
            print(f"round {r + 1}/{a.rounds}: " + ', '.join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) if v else float('nan') for k, v in times.items()}
    print(f"\n{a.backbone} @ {a.image_size}px, batch 1, {torch.get_num_threads()} threads, {a.rounds} rounds, random weights, CPU")
    print("| method | ms/image (median) | x plain forward | target (authors' code) | peak MiB | x plain peak |")
    print("|---|---|---|---|---|---|")
    for k in ['plain', *methods]:
        t = TARGETS.get(k)
        verdict = '' if t is None or k not in med else (f"<= {t}x: met" if med[k] / med['plain'] <= t else f"<= {t}x: NOT met")
        m = f"{mem[k]:.0f} | {mem[k] / mem['plain']:.2f}x" if k in mem else '- | -'
        r = med.get(k, float('nan'))
        print(f"| {k} | {r * 1e3:.0f} | {r / med['plain']:.2f}x | {verdict} | {m} |")

if __name__ == '__main__': main()
