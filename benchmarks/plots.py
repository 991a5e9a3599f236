"""Figure speed: t-SNE and UMAP of 2,000 text features (target: each under a minute on 2 cores) and one
anomaly-map gallery (target: seconds). Prints seconds measured in this run.

    python benchmarks/plots.py [--n 2000] [--dim 768] [--threads 2]
"""
import argparse, tempfile, time
from pathlib import Path

import numpy as np

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=2000); ap.add_argument('--dim', type=int, default=768)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits
    threadpool_limits(a.threads)
    import os; os.environ.setdefault('NUMBA_NUM_THREADS', str(a.threads))
    from dlvp_clip.plots import embed_2d, plot_gallery, save_figure
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, (a.n // 2, a.dim)), rng.normal(0.3, 1, (a.n - a.n // 2, a.dim))].astype(np.float32)
    for m in ('tsne', 'umap'):
        t = time.perf_counter(); embed_2d(x, m); print(f"{m:5s} on {a.n}x{a.dim}: {time.perf_counter() - t:6.1f} s (target < 60 s)")
    imgs = [rng.integers(0, 256, (518, 518, 3), dtype=np.uint8) for _ in range(4)]
    masks = [rng.random((518, 518)) > 0.99 for _ in range(4)]; maps = [rng.random((518, 518)) for _ in range(4)]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter(); save_figure(plot_gallery(imgs, masks, maps), Path(d)/'g.png')
        print(f"gallery of 4 images at 518: {time.perf_counter() - t:6.1f} s (target: seconds)")

if __name__ == '__main__': main()
