"""Backbone speed: our prompt-ready block loop vs open_clip's own forward, and truncated vs full text encoding.

Prints, per configuration (random weights, batch 1, CPU): ms/image of open_clip `encode_image`, of open_clip
`forward_intermediates` at the taps, and of `ClipBackbone.encode_image` (no prompts), as min and median over
interleaved rounds, and the ratios measured in this run. Targets: ours / forward_intermediates <= 1.05;
text truncated to the longest EOT >= 2.5x faster than the 77-token run for the default prompt set.

    python benchmarks/backbone.py [--rounds 3] [--threads 2] [--configs tiny,b16,l14]
"""
import argparse, statistics, time

import torch

from dlvp_clip.backbone import TINY_CLIP, load_backbone
from dlvp_clip.prompts import build_sentences, tokenize_prompts

CONFIGS = {'tiny': (TINY_CLIP, 518), 'b16': ('ViT-B-16', 224), 'l14': ('ViT-L-14-336', 518)}

def _time(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def bench(name, size, rounds):
    torch.manual_seed(0)
    bb = load_backbone(name, pretrained=None, image_size=size)
    x = torch.randn(1, 3, size, size)
    idx = [t - 1 for t in bb.taps]
    fns = {'open_clip encode_image': lambda: bb.clip.encode_image(x),
           'open_clip forward_intermediates': lambda: bb.visual.forward_intermediates(x, indices=idx, output_fmt='NLC'),
           'ours encode_image': lambda: bb.encode_image(x),
           'ours encode_image + attn row': lambda: bb.encode_image(x, attn=True)}
    toks = tokenize_prompts(bb, build_sentences('bottle'), n_slots=4).tokens
    tfns = {'text 77 tokens': lambda: bb.encode_text(toks, truncate=False),
            'text truncated': lambda: bb.encode_text(toks, truncate=True)}
    times = {k: [] for k in [*fns, *tfns]}
    with torch.inference_mode():
        for f in [*fns.values(), *tfns.values()]: f()  # warm-up
        for _ in range(rounds):                       # interleaved, so drift hits every variant alike
            for k, f in [*fns.items(), *tfns.items()]: times[k].append(_time(f))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{name} @ {size}px, batch 1, {torch.get_num_threads()} threads, {rounds} rounds (48 prompt sentences, "
          f"longest EOT at {int(toks.argmax(-1).max()) + 1}/77 tokens)")
    for k, v in times.items(): print(f"  {k:34s} min {min(v)*1e3:9.1f} ms   median {med[k]*1e3:9.1f} ms")
    mn = {k: min(v) for k, v in times.items()}
    r = lambda a, b: f"median {med[a] / med[b]:.3f}, min {mn[a] / mn[b]:.3f}"
    print(f"  ratio ours / forward_intermediates: {r('ours encode_image', 'open_clip forward_intermediates')} (target <= 1.05)")
    print(f"  ratio ours / encode_image: {r('ours encode_image', 'open_clip encode_image')}")
    print(f"  ratio attn row overhead: {r('ours encode_image + attn row', 'ours encode_image')}")
    print(f"  ratio text 77-token / truncated: {r('text 77 tokens', 'text truncated')} (target >= 2.5x faster)")
    r_fi, r_tx = mn['ours encode_image'] / mn['open_clip forward_intermediates'], med['text 77 tokens'] / med['text truncated']
    return r_fi, r_tx

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--configs', default='tiny,b16,l14')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for c in a.configs.split(','): bench(*CONFIGS[c], a.rounds)
