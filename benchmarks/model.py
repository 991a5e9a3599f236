"""DLVP-CLIP inference cost relative to one plain backbone forward, measured in one run.

Prints ms/image of `DLVPCLIP.predict` (random weights, batch 1, CPU) and of one plain open_clip
`encode_image` at the same size, interleaved over rounds, and their ratio (the method needs two visual passes and
one text pass per image, so the floor is about 2.0x; target <= 2.3x). Also: the same with bf16 autocast on the
image side only, peak resident memory, and the learned parameter count per module.

    python benchmarks/model.py [--backbone ViT-L-14-336] [--image-size 518] [--rounds 3] [--threads 2]
"""
import argparse, resource, statistics, time

import torch

from dlvp_clip.backbone import load_backbone
from dlvp_clip.methods.dlvp import DLVPCLIP, DLVPConfig

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--backbone', default='ViT-L-14-336')
    ap.add_argument('--image-size', type=int, default=518)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--no-bf16', action='store_true', help='skip the bf16 image-side variant')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bb = load_backbone(a.backbone, pretrained=None, image_size=a.image_size)
    model = DLVPCLIP(bb, DLVPConfig(backbone=a.backbone, image_size=a.image_size)).eval()
    x = torch.randn(1, 3, a.image_size, a.image_size)

    def predict(dtype):
        model.image_autocast = dtype
        return model.predict(x, 'bottle')
    fns = {'plain open_clip encode_image': lambda: bb.clip.encode_image(x), 'DLVP predict fp32': lambda: predict(None)}
    if not a.no_bf16:
        def plain_bf16():
            with torch.autocast('cpu', dtype=torch.bfloat16): return bb.clip.encode_image(x)
        fns['plain encode_image bf16'] = plain_bf16
        fns['DLVP predict bf16 image side'] = lambda: predict(torch.bfloat16)
    times = {k: [] for k in fns}
    with torch.inference_mode():
        for f in fns.values(): f()  # warm-up (also caches nothing across images: text runs per image)
        for _ in range(a.rounds):
            for k, f in fns.items():
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.backbone} @ {a.image_size}px, batch 1, {torch.get_num_threads()} threads, {a.rounds} rounds, random weights")
    for k, v in times.items(): print(f"  {k:32s} min {min(v)*1e3:9.1f} ms   median {med[k]*1e3:9.1f} ms")
    print(f"  ratio DLVP predict / plain forward (fp32): {med['DLVP predict fp32'] / med['plain open_clip encode_image']:.2f}x "
          "(floor ~2.0x; target <= 2.3x; peers here: AdaCLIP 3.0x, Bayes-PFL 2.3x, AnomalyCLIP 2.0x)")
    if not a.no_bf16:
        print(f"  ratio DLVP bf16-image / plain fp32 forward: {med['DLVP predict bf16 image side'] / med['plain open_clip encode_image']:.2f}x; "
              f"bf16 DLVP / bf16 plain: {med['DLVP predict bf16 image side'] / med['plain encode_image bf16']:.2f}x")
    print(f"  peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    table = model.parameter_table()
    print("  learned parameters: " + ', '.join(f"{k} {v/1e6:.2f}M" for k, v in table.items())
          + "  (AdaCLIP ~10.67M, AnomalyCLIP 5.56M, Bayes-PFL 27.37M)")

if __name__ == '__main__': main()
