"""Where an evaluation's time goes: the data path (decode + resize vs the image cache), the model, post-processing,
the metrics, and end-to-end `evaluate` with 0 vs N loader workers, all measured in one run.

Targets: the cached data path >= 20x faster than decoding; with the cache, end-to-end evaluation with the tiny
backbone within 1.3x of the model time alone; on a GPU (--device cuda), the data path not the bottleneck at batch 8
(cached data ms/image, divided over the workers, below the ViT-L-14-336@518 model ms/image). Also the peak host
memory of evaluating one class as large as VisA's largest (200 test images) at 518 px, in a child process.

    python benchmarks/pipeline.py [--images 16] [--size 518] [--source 1024] [--workers 2] [--threads 1]
                                  [--large-batch 8] [--large-batches 1] [--memory-images 200] [--device cpu]
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dlvp_clip.backbone import load_backbone
from dlvp_clip.cache import attach_cache
from dlvp_clip.dataset import AnomalyDataset
from dlvp_clip.evaluate import evaluate
from dlvp_clip.heads import anomaly_map, gaussian_blur
from dlvp_clip.manifest import Manifest, Record
from dlvp_clip.metrics import class_metrics
from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig
from dlvp_clip.testing import synth_image, tiny_backbone

def write_images(root: Path, n: int, source: int) -> Manifest:
    "n stand-in photos (source² PNG), every other one with a defect and its mask, as one class."
    recs = []
    for i in range(n):
        img, mask = synth_image(source, seed=i, defect=i % 2 == 1)
        Image.fromarray(img).save(root/f'{i:04d}.png')
        if i % 2: Image.fromarray(mask * 255).save(root/f'{i:04d}_mask.png')
        recs.append(Record(f'{i:04d}.png', f'{i:04d}_mask.png' if i % 2 else None, 'disc', 'stain' if i % 2 else 'good', i % 2))
    return Manifest('synthetic', str(root), 'benchmark', recs)

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def per_image(f, n: int, rounds: int = 1, dev=torch.device('cpu')) -> float:
    "Seconds per image of `f` (covering n images), the best of `rounds`."
    best = float('inf')
    for _ in range(rounds):
        sync(dev); t = time.perf_counter(); f(); sync(dev); best = min(best, (time.perf_counter() - t) / n)
    return best

def memory_child(n: int, size: int):
    "Evaluate one class of n images at `size` with the model replaced by random maps; print this process's peak RSS."
    with tempfile.TemporaryDirectory() as d:
        d = Path(d); (d/'data').mkdir()
        man = write_images(d/'data', n, size)
        model = DLVPCLIP(tiny_backbone(image_size=size), DLVPConfig(backbone='DLVP-Tiny-14', image_size=size))
        g = torch.Generator().manual_seed(0)
        model.predict = lambda x, c, sigma=None, score=None: (gaussian_blur(torch.rand(len(x), size, size, generator=g), 4), torch.rand(len(x), generator=g))
        evaluate(model, man, d/'run', batch_size=8, progress=False, cache_dir=d/'cache')
    hwm = next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM:'))   # this process's own peak
    print(json.dumps(dict(maxrss_mb=int(hwm.split()[1]) / 1024)))   # (ru_maxrss would carry the parent's peak across exec)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--images', type=int, default=16, help='images of the data, metrics and end-to-end runs')
    ap.add_argument('--size', type=int, default=518, help='model input size')
    ap.add_argument('--source', type=int, default=1024, help='side of the stand-in photos (MVTec-AD: up to 1024)')
    ap.add_argument('--workers', type=int, default=2, help='loader workers of the second end-to-end run')
    ap.add_argument('--threads', type=int, default=1, help='torch threads of the main process')
    ap.add_argument('--batch', type=int, default=8, help='batch size of the tiny model and of evaluate')
    ap.add_argument('--large-batch', type=int, default=8, help='batch size of the ViT-L-14-336 model path')
    ap.add_argument('--large-batches', type=int, default=1, help='timed ViT-L-14-336 batches (0: skip it)')
    ap.add_argument('--memory-images', type=int, default=200, help='images of the memory check (0: skip it)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--memory-child', nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child: return memory_child(*a.memory_child)
    torch.set_num_threads(a.threads)
    dev, n, res = torch.device(a.device), a.images, {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d); (d/'data').mkdir()
        man = write_images(d/'data', n, a.source)
        bb = tiny_backbone(image_size=a.size)
        ds = AnomalyDataset(man, image_size=a.size, mean=bb.mean, std=bb.std)
        res['data: decode + resize + normalise'] = per_image(lambda: [ds[i] for i in range(n)], n)
        t = time.perf_counter(); attach_cache(ds, d/'cache', log=lambda s: None); res['cache build (once, 0 workers)'] = (time.perf_counter() - t) / n
        res['data: cached + normalise'] = per_image(lambda: [ds[i] for i in range(n)], n, rounds=3)

        torch.manual_seed(0)
        model = DLVPCLIP(bb, DLVPConfig(backbone=bb.name, image_size=a.size)).to(dev).eval()
        x = torch.stack([ds[i]['image'] for i in range(a.batch)]).to(dev)
        cls = ['disc'] * a.batch
        with torch.no_grad():
            out = model(x, cls)                                          # warm-up, reused for the post-processing
            res['model: tiny forward'] = per_image(lambda: model(x, cls), a.batch, dev=dev)
            res['post: maps, σ=4 blur, softmax, to host'] = per_image(
                lambda: (gaussian_blur(anomaly_map(out.maps), 4).float().cpu(), out.image_logits.softmax(-1)[:, 1].cpu()), a.batch, rounds=3, dev=dev)
            maps = np.concatenate([model.predict(torch.stack([ds[i]['image'] for i in range(s, min(n, s + a.batch))]).to(dev), 'disc')[0].float().cpu().numpy()
                                   for s in range(0, n, a.batch)])
        masks = np.stack([ds.mask_at(i)[0].numpy() > 0.5 for i in range(n)])
        labels = [r.label for r in ds.records]
        res['metrics (with exact AUPRO)'] = per_image(lambda: class_metrics(np.random.rand(n), labels, maps, masks), n)

        e2e, tables = {}, {}
        for w in (0, a.workers):
            t = time.perf_counter()
            tables[w] = evaluate(model, man, d/f'run{w}', batch_size=a.batch, device=dev, progress=False, workers=w, cache_dir=d/'cache')
            e2e[w] = (time.perf_counter() - t) / n
        model_alone = res['model: tiny forward'] + res['post: maps, σ=4 blur, softmax, to host']

        if a.large_batches:
            t = time.perf_counter()
            big = load_backbone('ViT-L-14-336', pretrained=None, image_size=a.size, device=a.device)
            lm = DLVPCLIP(big, DLVPConfig(backbone='ViT-L-14-336', image_size=a.size)).to(dev).eval()
            load_s = time.perf_counter() - t
            xl = torch.stack([ds[i % n]['image'] for i in range(a.large_batch)]).to(dev)
            with torch.no_grad():
                res[f'model: ViT-L-14-336@{a.size} forward (batch {a.large_batch})'] = per_image(lambda: model_and_post(lm, xl), a.large_batch, a.large_batches, dev)
            del lm, big
    mem = None
    if a.memory_images:
        r = subprocess.run([sys.executable, __file__, '--memory-child', str(a.memory_images), str(a.size)], capture_output=True, text=True)
        mem = json.loads(r.stdout.strip().splitlines()[-1])['maxrss_mb'] if r.returncode == 0 else r.stderr[-2000:]

    print(f"pipeline benchmark: {n} stand-in photos {a.source}² -> {a.size}², batch {a.batch}, device {a.device}, "
          f"{torch.get_num_threads()} torch thread(s), random weights")
    for k, v in res.items(): print(f"  {k:52s} {v * 1e3:10.2f} ms/image")
    for w, v in e2e.items(): print(f"  {'end-to-end evaluate, cache, ' + str(w) + ' workers':52s} {v * 1e3:10.2f} ms/image")
    speed = res['data: decode + resize + normalise'] / res['data: cached + normalise']
    print(f"ratios (same run):")
    print(f"  data path decoded / cached:               {speed:8.1f}x   (target >= 20x: {'met' if speed >= 20 else 'NOT met'})")
    for w, v in e2e.items():
        r = v / model_alone
        print(f"  end-to-end ({w} workers) / model alone:     {r:8.2f}x   (target <= 1.3x: {'met' if r <= 1.3 else 'NOT met'})")
    same = tables[0].round(12).equals(tables[a.workers].round(12))
    print(f"  results with {a.workers} workers identical to 0 workers: {same}")
    big = [k for k in res if k.startswith('model: ViT-L')]
    if big:
        lv = res[big[0]]
        print(f"  ViT-L model / cached data path:           {lv / res['data: cached + normalise']:8.1f}x   "
              f"(data {'is not' if res['data: cached + normalise'] / max(1, a.workers) < lv else 'IS'} the bottleneck on this {a.device}; "
              f"ViT-L build {load_s:.0f}s)")
    if mem is not None:
        print(f"  peak host memory, one class of {a.memory_images} images at {a.size} (model replaced by random maps): "
              + (f"{mem:.0f} MB (target < 4096 MB: {'met' if mem < 4096 else 'NOT met'})" if isinstance(mem, float) else f"failed: {mem}"))

def model_and_post(model, x):
    "One batch through DLVP-CLIP with its post-processing (what evaluate runs per batch)."
    return model.predict(x, 'disc')

if __name__ == '__main__': main()
