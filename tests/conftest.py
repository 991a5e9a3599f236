"""Test environment: one torch thread (two threads collapse when another process is busy), no hub access."""
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('MPLBACKEND', 'Agg')

from pathlib import Path
import pytest
import torch

torch.set_num_threads(1)

from dlvp_clip.core import find_root

ROOT = find_root(Path(__file__))

@pytest.fixture
def root() -> Path: return ROOT
