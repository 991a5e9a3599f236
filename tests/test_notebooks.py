"""Every notebook executes as `nbdev_test` runs it (same function, `#| slow`/`#| gpu` cells skipped)."""
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

from test_repo import NBS, ROOT

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NBS])
def test_notebook_executes(nb):
    ok, secs = run_notebook(nb, skip_flags=get_config(path=ROOT).tst_flags.split(), showerr=True)
    assert ok, f"{nb.name} failed under nbdev_test (traceback above)"
