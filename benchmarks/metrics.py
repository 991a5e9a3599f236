"""Pixel-metric speed: exact sort-based AUPRO vs the common 200-threshold loop (AnomalyCLIP's cal_pro_score,
skimage `label` per threshold), on the same maps, in one run; plus pixel AUROC vs scikit-learn.

    python benchmarks/metrics.py [--n 100] [--size 518] [--threads 2]

Targets: exact AUPRO >= 20x faster than the 200-threshold loop (reference numbers measured on this machine for
100 maps of 518x518: exact sort-based 11 s, anomalib 2.7 5.9 s, AnomalyCLIP 59 s).
"""
import argparse, resource, time

import numpy as np
from scipy import ndimage

from dlvp_clip.metrics import aupro_anomalyclip, pixel_metrics

def synth_maps(n, size, seed=0):
    "30% normal maps, the rest with 1-4 elliptical defects; scores = smooth noise + a bump over each defect."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    masks = np.zeros((n, size, size), bool)
    for i in range(int(n * 0.3), n):
        for _ in range(rng.integers(1, 5)):
            cy, cx, ry, rx = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size, rng.uniform(4, 30), rng.uniform(4, 30)
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    maps = np.stack([ndimage.gaussian_filter(rng.random((size, size)), 8) for _ in range(n)]).astype(np.float32)
    maps = (maps - maps.min()) / (maps.max() - maps.min())
    maps = maps + 0.35 * np.stack([ndimage.gaussian_filter(m.astype(np.float32), 4) for m in masks])
    return maps.astype(np.float32), masks

def loop_reference(masks, amaps, max_step=200, expect_fpr=0.3):
    "The common 200-threshold AUPRO (cflow-ad / AnomalyCLIP cal_pro_score): skimage labelling at every threshold."
    from skimage import measure
    from sklearn.metrics import auc
    binary = np.zeros_like(amaps, dtype=bool)
    lo, hi = amaps.min(), amaps.max()
    pros, fprs = [], []
    inverse = 1 - masks.astype(np.uint8)
    for th in np.arange(lo, hi, (hi - lo) / max_step):
        binary[amaps <= th], binary[amaps > th] = 0, 1
        pro = []
        for b, m in zip(binary, masks):
            for region in measure.regionprops(measure.label(m)):
                pro.append(b[region.coords[:, 0], region.coords[:, 1]].sum() / region.area)
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum()); pros.append(np.mean(pro))
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < expect_fpr
    f = fprs[keep]; f = (f - f.min()) / (f.max() - f.min())
    return auc(f, pros[keep])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=100); ap.add_argument('--size', type=int, default=518)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits
    threadpool_limits(a.threads)
    maps, masks = synth_maps(a.n, a.size)
    print(f"{a.n} maps of {a.size}x{a.size} ({masks.mean() * 100:.1f}% anomalous pixels), {a.threads} threads")
    import tracemalloc
    tracemalloc.start()
    t = time.perf_counter(); ours = pixel_metrics(maps, masks); t_ours = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**30; tracemalloc.stop()
    t = time.perf_counter(); ref = loop_reference(masks, maps); t_ref = time.perf_counter() - t
    t = time.perf_counter(); compat = aupro_anomalyclip(maps, masks); t_compat = time.perf_counter() - t
    from sklearn.metrics import roc_auc_score
    t = time.perf_counter(); sk = roc_auc_score(masks.ravel(), maps.ravel()); t_sk = time.perf_counter() - t
    print(f"  ours, all four pixel metrics from one sort: {t_ours:7.2f} s  AUPRO {ours['aupro']:.4f}  AUROC {ours['auroc']:.6f}  "
          f"(peak extra memory {peak:.2f} GiB = {peak * 2**30 / maps.nbytes:.1f}x the maps)")
    print(f"  200-threshold loop (skimage label per threshold, AnomalyCLIP's cal_pro_score): {t_ref:7.2f} s  AUPRO {ref:.4f}")
    print(f"  our --aupro-compat anomalyclip (same numbers, regions labelled once): {t_compat:7.2f} s  AUPRO {compat:.4f}")
    print(f"  scikit-learn roc_auc_score alone:           {t_sk:7.2f} s  AUROC {sk:.6f}")
    print(f"  ratio loop / ours: {t_ref / t_ours:.1f}x faster (target >= 20x); AUROC difference vs sklearn {abs(sk - ours['auroc']):.1e}")

if __name__ == '__main__': main()
